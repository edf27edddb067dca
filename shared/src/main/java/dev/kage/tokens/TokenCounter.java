package dev.kage.tokens;

import com.knuddels.jtokkit.Encodings;
import com.knuddels.jtokkit.api.Encoding;
import com.knuddels.jtokkit.api.EncodingRegistry;
import com.knuddels.jtokkit.api.EncodingType;
import java.util.Optional;

/**
 * Counts tokens with jtokkit when an agent reports none. Thread-safe: the registry and encodings are
 * immutable after construction.
 */
public final class TokenCounter {
    private static final EncodingRegistry REGISTRY = Encodings.newLazyEncodingRegistry();

    private TokenCounter() {
    }

    /** True for the encodings jtokkit knows, e.g. {@code o200k_base}, {@code cl100k_base}. */
    public static boolean isKnownEncoding(String name) {
        return EncodingType.fromName(name).isPresent();
    }

    /**
     * Tokens in {@code text} under {@code encoding}; special-token text such as {@code <|endoftext|>}
     * counts as ordinary text.
     *
     * @throws IllegalArgumentException for an unknown encoding
     */
    public static long count(String encoding, String text) {
        Optional<EncodingType> type = EncodingType.fromName(encoding);
        if (type.isEmpty()) {
            throw new IllegalArgumentException("unknown token encoding '" + encoding + "'");
        }
        Encoding enc = REGISTRY.getEncoding(type.get());
        return enc.countTokensOrdinary(text);
    }

    /** The seed's estimate, characters divided by four, rounded up: a last resort. */
    public static long estimate(String text) {
        return (text.length() + 3) / 4;
    }
}
