package dev.kage.redis;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kage.testing.RedisFixture;
import io.lettuce.core.RedisException;
import io.lettuce.core.ScriptOutputType;
import io.lettuce.core.protocol.CommandArgs;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * {@link EncodedArgs}: what it writes is byte for byte what Lettuce's own {@link CommandArgs} writes for the same
 * keys and values with {@link Utf8Codec} (a wrong length prefix would make Redis misread every later argument), and
 * {@link LuaScript#sendAll}, which sends script calls through it, delivers every key and argument to the real Redis
 * intact, decodes each reply type as Lettuce's {@code evalsha} would, and reports a script's error.
 */
class EncodedArgsTest {
    private final RedisFixture redis = new RedisFixture();

    @AfterEach
    void close() {
        redis.close();
    }

    @Test
    void writesWhatLettucesCommandArgsWriteForAnyText() {
        Random random = new Random(17);
        for (int round = 0; round < 300; round++) {
            List<String> keys = texts(random, random.nextInt(4));
            List<String> values = texts(random, random.nextInt(60));
            long number = random.nextLong();

            CommandArgs<String, String> lettuces = new CommandArgs<>(Utf8Codec.INSTANCE).add("0123abcd").add(keys.size());
            // Starts small, so that the arguments make it grow several times.
            EncodedArgs ours = new EncodedArgs(1).value(keys.size());
            keys.forEach(key -> {
                lettuces.addKey(key);
                ours.key(key);
            });
            values.forEach(value -> {
                lettuces.addValue(value);
                // A value encoded once beforehand (a field name) is written as it is, and reads the same.
                if (random.nextBoolean()) {
                    ours.value(value);
                } else {
                    ours.encoded(EncodedArgs.encodedOf(value));
                }
            });
            lettuces.add(number);
            ours.value(number);

            // The head (a script's SHA-1) goes in front when sent, and the arguments behind it are shared, not copied.
            EncodedArgs sent = ours.behind(EncodedArgs.encodedOf("0123abcd"));
            assertThat(sent.count()).isEqualTo(lettuces.count());
            assertThat(encoded(sent)).as("round %d", round).isEqualTo(encoded(lettuces));
            assertThat(encoded(ours.behind(EncodedArgs.encodedOf("other")))).as("round %d", round)
                    .isEqualTo(concat(encoded(new CommandArgs<>(Utf8Codec.INSTANCE).add("other")), ours.bytes()));
            // The first key as sent (a cluster client routes by it). Lettuce's own encodes it through StringCodec, which
            // writes a lone surrogate otherwise than what Utf8Codec sends; for any other text the two agree.
            assertThat(sent.getFirstEncodedKey()).isEqualTo(keys.isEmpty() ? null
                    : java.nio.ByteBuffer.wrap(keys.getFirst().getBytes(StandardCharsets.UTF_8)));
        }
        // A null value goes empty, as through Lettuce's own arguments; Lettuce's add methods are refused.
        EncodedArgs withNull = new EncodedArgs(8).value((String) null).value("x");
        assertThat(encoded(withNull)).isEqualTo(encoded(new CommandArgs<>(Utf8Codec.INSTANCE).addValue(null).addValue("x")));
        assertThatThrownBy(() -> withNull.add("more")).isInstanceOf(UnsupportedOperationException.class);
        assertThatThrownBy(() -> withNull.addValues("a", "b")).isInstanceOf(UnsupportedOperationException.class);

        // Name and value pairs, the names encoded once: as many values as names at most.
        LuaScript.Names names = new LuaScript.Names(List.of("a", "bé", "c"));
        LuaScript.Call pairs = new LuaScript.Call(new String[] {"k"}, 8).pairs(names, new String[] {"1", null});
        assertThat(encoded(pairs.arguments)).isEqualTo(encoded(new CommandArgs<>(Utf8Codec.INSTANCE).add(1).addKey("k")
                .addValue("a").addValue("1").addValue("bé").addValue(null)));
        assertThatThrownBy(() -> pairs.pairs(names, new String[] {"1", "2", "3", "4"}))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("4 values for 3 names");

        // The log form names sizes, never the arguments (tenants' text).
        EncodedArgs secret = new EncodedArgs(8).value(1).key("k").value("a tenant's prompt").behind(EncodedArgs.encodedOf("sha"));
        assertThat(secret.toCommandString()).doesNotContain("prompt").contains("4 arguments");
        assertThat(secret.toString()).doesNotContain("prompt");
    }

    private static List<String> texts(Random random, int count) {
        List<String> texts = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            switch (random.nextInt(5)) {
                case 0 -> texts.add("");
                case 1 -> texts.add("x".repeat(random.nextInt(5_000)));
                case 2 -> texts.add("日本語 🚀 café " + random.nextInt());
                default -> {
                    // Any UTF-16 units, surrogates paired or not.
                    char[] units = new char[random.nextInt(30)];
                    for (int j = 0; j < units.length; j++) {
                        units[j] = (char) random.nextInt(0x10000);
                    }
                    texts.add(new String(units));
                }
            }
        }
        return texts;
    }

    private static byte[] concat(byte[] first, byte[] second) {
        byte[] both = java.util.Arrays.copyOf(first, first.length + second.length);
        System.arraycopy(second, 0, both, first.length, second.length);
        return both;
    }

    private static byte[] encoded(CommandArgs<String, String> args) {
        ByteBuf buffer = Unpooled.buffer();
        args.encode(buffer);
        byte[] bytes = new byte[buffer.readableBytes()];
        buffer.getBytes(0, bytes);
        return bytes;
    }

    @Test
    void scriptCallsSentThroughItReachRedisIntactAndTheirRepliesDecodeAsEvalshasDo() {
        LuaScript echo = LuaScript.load(EncodedArgsTest.class, "echo.lua");
        Random random = new Random(5);
        List<LuaScript.Call> calls = new ArrayList<>();
        List<List<String>> sent = new ArrayList<>();
        for (int c = 0; c < 20; c++) {
            String[] keys = {redis.namespace() + ":a:" + c, redis.namespace() + ":b:" + c};
            List<String> args = texts(random, 1 + random.nextInt(200));
            calls.add(new LuaScript.Call(keys, args.toArray(String[]::new)));
            List<String> all = new ArrayList<>(List.of(keys));
            args.forEach(arg -> all.add(new String(arg.getBytes(StandardCharsets.UTF_8), StandardCharsets.UTF_8)));
            sent.add(all);
        }
        // MULTI: the script answers with its KEYS then its ARGV, as Redis received them.
        List<List<Object>> echoed = echo.<List<Object>>sendAll(redis.redis(), ScriptOutputType.MULTI, calls).await();
        assertThat(echoed).hasSize(calls.size());
        for (int c = 0; c < calls.size(); c++) {
            assertThat(echoed.get(c)).as("call %d", c).containsExactlyElementsOf(sent.get(c));
        }

        LuaScript count = LuaScript.load(EncodedArgsTest.class, "count.lua");
        String[] keys = {redis.namespace() + ":counted"};
        assertThat(count.<Long>sendAll(redis.redis(), ScriptOutputType.INTEGER,
                List.of(new LuaScript.Call(keys, new String[] {"a", "b", "c"}), new LuaScript.Call(keys, new String[0]))).await())
                .containsExactly(3L, 0L);
        assertThat(count.<String>sendAll(redis.redis(), ScriptOutputType.VALUE,
                List.of(new LuaScript.Call(keys, new String[] {"value", "é"}))).await()).containsExactly("é");
        assertThat(count.<String>sendAll(redis.redis(), ScriptOutputType.STATUS,
                List.of(new LuaScript.Call(keys, new String[] {"status"}))).await()).containsExactly("OK");
        // OBJECT: whatever Lettuce's own evalsha makes of the reply.
        Object lettuces = count.<Object>run(redis.redis(), ScriptOutputType.OBJECT, keys, "a", "b");
        assertThat(count.<Object>sendAll(redis.redis(), ScriptOutputType.OBJECT,
                List.of(new LuaScript.Call(keys, new String[] {"a", "b"}))).await()).containsExactly(lettuces);
        assertThat(count.<Boolean>sendAll(redis.redis(), ScriptOutputType.BOOLEAN,
                List.of(new LuaScript.Call(keys, new String[] {"boolean"}))).await()).containsExactly(true);

        // With the script's text (EVAL), as the calls Redis answered NOSCRIPT are sent again.
        assertThat(echo.<List<Object>>eval(redis.redis(), ScriptOutputType.MULTI, calls.get(3))).containsExactlyElementsOf(sent.get(3));

        // A script's error reply fails the await, naming Redis's message.
        assertThatThrownBy(() -> count.sendAll(redis.redis(), ScriptOutputType.INTEGER,
                List.of(new LuaScript.Call(keys, new String[] {"fail"}))).await())
                .isInstanceOf(RedisException.class).hasMessageContaining("asked to fail");
    }
}
