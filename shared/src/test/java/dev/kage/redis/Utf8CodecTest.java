package dev.kage.redis;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kage.testing.RedisFixture;
import io.lettuce.core.ScriptOutputType;
import io.lettuce.core.StreamMessage;
import io.lettuce.core.XReadArgs;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.codec.ByteArrayCodec;
import io.lettuce.core.codec.StringCodec;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * {@link Utf8Codec}: its sizes are exact (Lettuce writes the RESP length from them, so a wrong one corrupts the
 * protocol), and what it stores in the real Redis is the JDK's UTF-8 of the string: byte for byte what
 * {@link StringCodec#UTF8} stores for well-formed text.
 */
class Utf8CodecTest {
    private static final List<String> SAMPLES = List.of("", "kage:jobs:{claude}:normal", "café", "日本語のタスク",
            "emoji 🚀 and 👩‍💻", "lone high \uD83D then text", "lone low \uDE80", "\uD83D", "nul \u0000 inside",
            "x".repeat(70_000), "é".repeat(40_000));

    private final RedisFixture redis = new RedisFixture();

    @AfterEach
    void close() {
        redis.close();
    }

    @Test
    void theSizeIsExactlyWhatIsWrittenForEveryKindOfText() {
        Random random = new Random(42);
        List<String> texts = new java.util.ArrayList<>(SAMPLES);
        for (int i = 0; i < 2_000; i++) {
            // Any UTF-16 units at all, surrogates paired or not.
            char[] units = new char[random.nextInt(40)];
            for (int j = 0; j < units.length; j++) {
                units[j] = (char) random.nextInt(0x10000);
            }
            texts.add(new String(units));
        }
        for (String text : texts) {
            ByteBuf written = Unpooled.buffer();
            Utf8Codec.INSTANCE.encodeValue(text, written);
            assertThat(Utf8Codec.INSTANCE.estimateSize(text)).as("size of %s", abbreviate(text)).isEqualTo(written.readableBytes());
            assertThat(bytesOf(written)).as("bytes of %s", abbreviate(text)).isEqualTo(text.getBytes(StandardCharsets.UTF_8));
            if (wellFormed(text)) {
                // StringCodec (Netty's writeUtf8) writes the same. Not for a lone high surrogate followed by another char:
                // Netty writes that char as one raw byte (a non-ASCII one corrupted), the JDK as '?' then the char.
                ByteBuf lettuces = Unpooled.buffer();
                StringCodec.UTF8.encodeValue(text, lettuces);
                assertThat(bytesOf(written)).as("bytes of %s", abbreviate(text)).isEqualTo(bytesOf(lettuces));
            }
        }
        assertThat(Utf8Codec.INSTANCE.isEstimateExact()).isTrue();
        assertThat(Utf8Codec.INSTANCE.estimateSize(null)).isZero();
        // The codec keeps the last string's bytes: a size asked for another string in between changes nothing.
        String first = "café " + random.nextInt();
        String second = new String(first);
        assertThat(Utf8Codec.INSTANCE.estimateSize(first)).isEqualTo(first.getBytes(StandardCharsets.UTF_8).length);
        assertThat(Utf8Codec.INSTANCE.estimateSize("日本語")).isEqualTo(9);
        ByteBuf again = Unpooled.buffer();
        Utf8Codec.INSTANCE.encodeValue(second, again);
        Utf8Codec.INSTANCE.encodeValue(first, again);
        assertThat(bytesOf(again)).isEqualTo((first + first).getBytes(StandardCharsets.UTF_8));
    }

    private static boolean wellFormed(String text) {
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (Character.isHighSurrogate(c) && i + 1 < text.length() && Character.isLowSurrogate(text.charAt(i + 1))) {
                i++;
            } else if (Character.isSurrogate(c)) {
                return false;
            }
        }
        return true;
    }

    @Test
    void keysValuesStreamFieldsAndScriptArgumentsRoundTripThroughTheRealRedis() {
        try (StatefulRedisConnection<String, String> connection = redis.client().connect(Utf8Codec.INSTANCE);
                StatefulRedisConnection<byte[], byte[]> raw = redis.client().connect(ByteArrayCodec.INSTANCE)) {
            var commands = connection.sync();
            for (int i = 0; i < SAMPLES.size(); i++) {
                String text = SAMPLES.get(i);
                String key = redis.namespace() + ":utf8:" + text.substring(0, Math.min(text.length(), 30)) + ":" + i;
                commands.set(key, text);
                assertThat(commands.get(key)).isEqualTo(expectedRoundTrip(text));
                // Stored as StringCodec would store it: the same bytes under the same key.
                assertThat(raw.sync().get(key.getBytes(StandardCharsets.UTF_8))).isEqualTo(text.getBytes(StandardCharsets.UTF_8));

                String stream = redis.namespace() + ":utf8-stream";
                commands.xadd(stream, Map.of(text + "-field", text, "n", Integer.toString(i)));
                List<StreamMessage<String, String>> last = commands.xrevrange(stream, io.lettuce.core.Range.create("-", "+"),
                        io.lettuce.core.Limit.create(0, 1));
                assertThat(last.getFirst().getBody()).containsEntry(expectedRoundTrip(text) + "-field", expectedRoundTrip(text));

                // Many arguments in one command, as the enqueue scripts send them: each one's length prefix must be
                // right, or every later argument is misread.
                String echoed = commands.eval("return ARGV[2] .. '|' .. ARGV[4]", ScriptOutputType.VALUE, new String[0],
                        text, "after-" + i, text, "end");
                assertThat(echoed).isEqualTo("after-" + i + "|end");
            }
            assertThat(commands.xread(XReadArgs.StreamOffset.from(redis.namespace() + ":utf8-stream", "0"))).hasSize(SAMPLES.size());
        }
    }

    /** Java and Netty both write an unpaired surrogate as {@code ?}. */
    private static String expectedRoundTrip(String text) {
        return new String(text.getBytes(StandardCharsets.UTF_8), StandardCharsets.UTF_8);
    }

    private static byte[] bytesOf(ByteBuf buffer) {
        byte[] bytes = new byte[buffer.readableBytes()];
        buffer.getBytes(buffer.readerIndex(), bytes);
        return bytes;
    }

    private static String abbreviate(String text) {
        return text.length() <= 40 ? text : text.substring(0, 40) + "… (" + text.length() + " chars)";
    }
}
