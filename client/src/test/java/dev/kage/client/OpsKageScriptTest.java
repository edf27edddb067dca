package dev.kage.client;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** {@code ops/kage}, run as a process: its own failures are exit 2, never 1 (which says a task did not complete). */
class OpsKageScriptTest {
    private static final Path SCRIPT = Path.of("..", "ops", "kage").toAbsolutePath().normalize();

    private record Result(int status, String err) {
    }

    private static Result run(String... env) throws Exception {
        ProcessBuilder builder = new ProcessBuilder("bash", SCRIPT.toString(), "version").redirectErrorStream(false);
        for (int i = 0; i + 1 < env.length; i += 2) {
            builder.environment().put(env[i], env[i + 1]);
        }
        Process process = builder.start();
        process.getOutputStream().close();
        String err = new String(process.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
        process.getInputStream().readAllBytes();
        assertThat(process.waitFor(60, TimeUnit.SECONDS)).isTrue();
        return new Result(process.exitValue(), err);
    }

    @Test
    void aMissingJarIsExitTwo() throws Exception {
        assertThat(Files.isRegularFile(SCRIPT)).isTrue();
        Result result = run("KAGE_CLIENT_JAR", "/nonexistent/kage-client.jar");
        assertThat(result.status()).isEqualTo(ExitCodes.USAGE);
        assertThat(result.err()).contains("no client jar at KAGE_CLIENT_JAR=/nonexistent/kage-client.jar");
    }

    @Test
    void noSuitableJdkIsExitTwo() throws Exception {
        Result result = run("KAGE_JAVA_MIN", "999", "KAGE_CLIENT_JAR", "/nonexistent/kage-client.jar");
        assertThat(result.status()).isEqualTo(ExitCodes.USAGE);
        assertThat(result.err()).contains("no JDK 999 or newer found");
    }
}
