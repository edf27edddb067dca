package dev.kage.redis;

import io.lettuce.core.protocol.CommandArgs;
import io.netty.buffer.ByteBuf;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * A command's arguments written in Redis's protocol as they are added: each a RESP bulk string ({@code $<length>\r\n
 * <bytes>\r\n}) in one growing heap array, which Lettuce copies into the command's buffer at once. Lettuce's own {@link
 * CommandArgs} keeps an object per argument and writes each into Netty's direct buffer piece by piece (the {@code $},
 * the length's digits, two CRLFs, the bytes), and on JDK 25, where Netty runs without {@code Unsafe}, each of those
 * small writes goes through the buffer's bounds and memory-session checks: for a script call with thousands of
 * arguments (a batch's 100 jobs of ~26 arguments each) that was about a third of the coordinator's CPU during a batch
 * submit (JFR, session 17). Strings are encoded by {@link String#getBytes(java.nio.charset.Charset)} into UTF-8, as
 * {@link Utf8Codec} encodes them (a lone surrogate is {@code ?}).
 *
 * <p>Only {@link #key}, {@link #value} and {@link #encoded} add arguments; Lettuce's {@code add…} methods inherited from
 * {@link CommandArgs} throw (they would add to a list this class never writes). Not thread-safe while
 * being built; once handed to Lettuce it is not changed, and Lettuce may encode it again (a reconnect's retry).
 */
final class EncodedArgs extends CommandArgs<String, String> {
    /** An argument written in front of the others when sent (a script's SHA-1 or text), already encoded; or null. */
    private final byte[] head;
    private byte[] bytes;
    private int size;
    private int count;
    private ByteBuffer firstKey;

    /** @param expectedBytes a guess at the encoded size, for the first array */
    EncodedArgs(int expectedBytes) {
        super(Utf8Codec.INSTANCE);
        this.head = null;
        this.bytes = new byte[Math.max(64, expectedBytes)];
    }

    private EncodedArgs(EncodedArgs body, byte[] head) {
        super(Utf8Codec.INSTANCE);
        this.head = head;
        this.bytes = body.bytes;
        this.size = body.size;
        this.count = body.count;
        this.firstKey = body.firstKey;
    }

    /**
     * These arguments behind {@code head} (from {@link #encodedOf}), sharing their bytes: {@code EVALSHA}'s arguments
     * are the script's SHA-1 then {@code numkeys key… arg…}, {@code EVAL}'s the script's text then the same. Add nothing
     * to either afterwards.
     */
    EncodedArgs behind(byte[] head) {
        return new EncodedArgs(this, head);
    }

    /** One argument, encoded: for {@link #behind}. */
    static byte[] encodedOf(String argument) {
        return new EncodedArgs(argument.length() + 16).value(argument).bytes();
    }

    EncodedArgs key(String key) {
        byte[] encoded = key.getBytes(StandardCharsets.UTF_8);
        if (firstKey == null) {
            firstKey = ByteBuffer.wrap(encoded).asReadOnlyBuffer();
        }
        return bulk(encoded);
    }

    /** A value; null is sent empty, as Lettuce's own arguments send it with {@link Utf8Codec}. */
    EncodedArgs value(String value) {
        return bulk(value == null ? new byte[0] : value.getBytes(StandardCharsets.UTF_8));
    }

    EncodedArgs value(long value) {
        return bulk(Long.toString(value).getBytes(StandardCharsets.ISO_8859_1));
    }

    /** An argument already encoded by {@link #encodedOf}: its bytes as they are (a constant, encoded once). */
    EncodedArgs encoded(byte[] encoded) {
        ensure(encoded.length);
        System.arraycopy(encoded, 0, bytes, size, encoded.length);
        size += encoded.length;
        count++;
        return this;
    }

    private EncodedArgs bulk(byte[] argument) {
        int digits = digits(argument.length);
        ensure(1 + digits + 2 + argument.length + 2);
        bytes[size++] = '$';
        // The length's digits, written from the last (Integer.toString's string per argument showed in the profile).
        for (int at = size + digits - 1, n = argument.length; at >= size; at--, n /= 10) {
            bytes[at] = (byte) ('0' + n % 10);
        }
        size += digits;
        bytes[size++] = '\r';
        bytes[size++] = '\n';
        System.arraycopy(argument, 0, bytes, size, argument.length);
        size += argument.length;
        bytes[size++] = '\r';
        bytes[size++] = '\n';
        count++;
        return this;
    }

    /** How many decimal digits {@code n} (≥ 0) has. */
    private static int digits(int n) {
        int digits = 1;
        while (n >= 10) {
            n /= 10;
            digits++;
        }
        return digits;
    }

    private void ensure(int more) {
        if (size + more > bytes.length) {
            bytes = Arrays.copyOf(bytes, Math.max(bytes.length * 2, size + more));
        }
    }

    @Override
    public int count() {
        return head == null ? count : count + 1;
    }

    @Override
    public void encode(ByteBuf buf) {
        if (head != null) {
            buf.writeBytes(head);
        }
        buf.writeBytes(bytes, 0, size);
    }

    @Override
    public ByteBuffer getFirstEncodedKey() {
        return firstKey == null ? null : firstKey.duplicate();
    }

    /** The size only: the arguments are tenants' text (descriptions), which has no place in a log line. */
    @Override
    public String toCommandString() {
        return "<" + count() + " arguments, " + (size + (head == null ? 0 : head.length)) + " bytes>";
    }

    @Override
    public String toString() {
        return getClass().getSimpleName() + toCommandString();
    }

    // Lettuce's own ways to add arguments would add to a list this class never writes: refused, so that a misuse fails
    // loudly instead of sending a command without them.

    @Override
    public CommandArgs<String, String> addKey(String key) {
        throw unsupported();
    }

    @Override
    public CommandArgs<String, String> addKeys(Iterable<String> keys) {
        throw unsupported();
    }

    @Override
    public CommandArgs<String, String> addValue(String value) {
        throw unsupported();
    }

    @Override
    public CommandArgs<String, String> addValues(Iterable<String> values) {
        throw unsupported();
    }

    @Override
    public CommandArgs<String, String> add(java.util.Map<String, String> map) {
        throw unsupported();
    }

    @Override
    public CommandArgs<String, String> add(String s) {
        throw unsupported();
    }

    @Override
    public CommandArgs<String, String> add(char[] cs) {
        throw unsupported();
    }

    @Override
    public CommandArgs<String, String> add(long n) {
        throw unsupported();
    }

    @Override
    public CommandArgs<String, String> add(double n) {
        throw unsupported();
    }

    @Override
    public CommandArgs<String, String> add(byte[] value) {
        throw unsupported();
    }

    @Override
    public CommandArgs<String, String> add(io.lettuce.core.protocol.CommandKeyword keyword) {
        throw unsupported();
    }

    @Override
    public CommandArgs<String, String> add(io.lettuce.core.protocol.CommandType type) {
        throw unsupported();
    }

    @Override
    public CommandArgs<String, String> add(io.lettuce.core.protocol.ProtocolKeyword keyword) {
        throw unsupported();
    }

    @Override
    public CommandArgs<String, String> addAll(CommandArgs<?, ?> args) {
        throw unsupported();
    }

    private static UnsupportedOperationException unsupported() {
        return new UnsupportedOperationException("EncodedArgs takes arguments through key(), value() and encoded() only");
    }

    /** The encoded arguments, without the head. */
    byte[] bytes() {
        return Arrays.copyOf(bytes, size);
    }
}
