package dev.kage.client;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ClientConfigTest {
    private static final String KEY = "kb_0123456789abcdefghijklmnopqrstuv";

    @TempDir
    Path home;

    private Path writeDefaultFile(String text) throws Exception {
        Path file = home.resolve(".config/kage/config");
        Files.createDirectories(file.getParent());
        return Files.writeString(file, text);
    }

    @Test
    void withNothingConfiguredTheUrlIsTheCoordinatorsDefaultPortAndThereIsNoKey() {
        ClientConfig config = ClientConfig.resolve(null, null, null, Map.of(), home);
        assertThat(config.url()).isEqualTo("http://127.0.0.1:8003");
        assertThat(config.urlSource()).isEqualTo("default");
        assertThat(config.key()).isNull();
        assertThatThrownBy(config::requireKey).isInstanceOf(ClientException.class)
                .hasMessageContaining("KAGE_API_KEY").hasMessageContaining("--key")
                .hasMessageContaining(home.resolve(".config/kage/config").toString())
                .satisfies(e -> assertThat(((ClientException) e).exitCode()).isEqualTo(ExitCodes.USAGE));
    }

    @Test
    void theConfigFileIsReadWhenNeitherFlagNorEnvironmentSaysOtherwise() throws Exception {
        writeDefaultFile("# my fleet\nurl = http://fleet.example:9000/\nkey=" + KEY + "\n");
        ClientConfig config = ClientConfig.resolve(null, null, null, Map.of(), home);
        assertThat(config.url()).isEqualTo("http://fleet.example:9000");
        assertThat(config.key()).isEqualTo(KEY);
        assertThat(config.keySource()).startsWith("key= in ");
    }

    @Test
    void theEnvironmentWinsOverTheFileAndFlagsWinOverBoth() throws Exception {
        writeDefaultFile("url=http://file:1\nkey=file-key-123\n");
        Map<String, String> env = Map.of("KAGE_URL", "http://env:2", "KAGE_API_KEY", "env-key-456");
        ClientConfig fromEnv = ClientConfig.resolve(null, null, null, env, home);
        assertThat(fromEnv.url()).isEqualTo("http://env:2");
        assertThat(fromEnv.key()).isEqualTo("env-key-456");
        assertThat(fromEnv.urlSource()).isEqualTo("KAGE_URL");

        ClientConfig fromFlags = ClientConfig.resolve("https://flag:3", "flag-key-789", null, env, home);
        assertThat(fromFlags.url()).isEqualTo("https://flag:3");
        assertThat(fromFlags.key()).isEqualTo("flag-key-789");
        assertThat(fromFlags.keySource()).isEqualTo("--key");
    }

    @Test
    void aUrlFromTheEnvironmentAndAKeyFromTheFileCombine() throws Exception {
        writeDefaultFile("key=" + KEY + "\n");
        ClientConfig config = ClientConfig.resolve(null, null, null, Map.of("KAGE_URL", "http://env:2"), home);
        assertThat(config.url()).isEqualTo("http://env:2");
        assertThat(config.key()).isEqualTo(KEY);
    }

    @Test
    void xdgConfigHomeAndKageConfigAndTheFlagChooseTheFile() throws Exception {
        Path xdg = Files.createDirectories(home.resolve("xdg/kage"));
        Files.writeString(xdg.resolve("config"), "url=http://xdg:1\n");
        assertThat(ClientConfig.resolve(null, null, null, Map.of("XDG_CONFIG_HOME", home.resolve("xdg").toString()), home).url())
                .isEqualTo("http://xdg:1");

        Path named = Files.writeString(home.resolve("named"), "url=http://named:2\n");
        assertThat(ClientConfig.resolve(null, null, null, Map.of("KAGE_CONFIG", named.toString()), home).url())
                .isEqualTo("http://named:2");

        Path flagged = Files.writeString(home.resolve("flagged"), "url=http://flagged:3\n");
        assertThat(ClientConfig.resolve(null, null, flagged, Map.of("KAGE_CONFIG", named.toString()), home).url())
                .isEqualTo("http://flagged:3");
    }

    @Test
    void aConfigFileNamedExplicitlyMustExistWhileTheDefaultOneMayNot() {
        Path missing = home.resolve("nope");
        assertThatThrownBy(() -> ClientConfig.resolve(null, null, missing, Map.of(), home))
                .hasMessage("config file " + missing + " does not exist (given by --config)")
                .satisfies(e -> assertThat(((ClientException) e).exitCode()).isEqualTo(ExitCodes.USAGE));
        assertThatThrownBy(() -> ClientConfig.resolve(null, null, null, Map.of("KAGE_CONFIG", missing.toString()), home))
                .hasMessageContaining("given by KAGE_CONFIG");
    }

    @Test
    void aUrlThatIsNotHttpIsAUsageErrorNamingWhereItCameFrom() {
        assertThatThrownBy(() -> ClientConfig.resolve(null, null, null, Map.of("KAGE_URL", "localhost:8003"), home))
                .hasMessage("KAGE_URL: 'localhost:8003' is not an http(s) URL such as http://127.0.0.1:8003");
        assertThatThrownBy(() -> ClientConfig.resolve("ftp://x", null, null, Map.of(), home)).hasMessageStartingWith("--url: ");
    }

    @Test
    void onlyAPrefixOfTheKeyIsEverShown() {
        assertThat(ClientConfig.keyPrefix(KEY)).isEqualTo("kb_01234567…");
        assertThat(ClientConfig.keyPrefix("dev-key-12345")).isEqualTo("dev-…");
        assertThat(ClientConfig.keyPrefix("abc")).isEqualTo("ab…");
        ClientConfig config = ClientConfig.resolve(null, KEY, null, Map.of(), home);
        assertThat(config.toString()).doesNotContain(KEY).contains("kb_01234567…");
    }
}
