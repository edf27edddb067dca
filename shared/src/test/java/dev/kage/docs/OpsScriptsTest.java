package dev.kage.docs;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * The operator scripts, run as bash runs them: what they print keeps passwords out of terminals and CI logs, and their
 * {@code --help} is their whole header. Nothing here starts or stops a service.
 */
class OpsScriptsTest {
    private static final Path ROOT = Path.of("..").toAbsolutePath().normalize();

    /** Exit code and output (both streams) of {@code argv} run in the repository, with {@code env} added. */
    private record Run(int exit, String output) {
    }

    private static Run run(Map<String, String> env, String... argv) throws Exception {
        ProcessBuilder builder = new ProcessBuilder(argv).directory(ROOT.toFile()).redirectErrorStream(true)
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
        builder.environment().putAll(env);
        Process process = builder.start();
        String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(process.waitFor(60, TimeUnit.SECONDS)).isTrue();
        return new Run(process.exitValue(), output);
    }

    @Test
    void urlsArePrintedWithTheirSecretsMasked() throws Exception {
        Map<String, String> shown = Map.of(
                "redis://:s3cret@h:6379", "redis://***@h:6379",
                "redis://s3cret@h", "redis://***@h",
                "rediss://kage:s3cret@h:6380/2", "rediss://***@h:6380/2",
                "postgresql://kage:s3cret@db:5432/kage", "postgresql://kage:***@db:5432/kage",
                "postgresql://kage:p@s3cret@db/kage", "postgresql://kage:***@db/kage",
                "jdbc:postgresql://db/kage?user=kage&password=s3cret&ssl=true", "jdbc:postgresql://db/kage?user=kage&password=***&ssl=true",
                "postgresql://postgres@127.0.0.1:5432/kage", "postgresql://postgres@127.0.0.1:5432/kage");
        for (var url : shown.entrySet()) {
            Run run = run(Map.of(), "bash", "-c", "source ops/lib/common.sh && shown_url \"$1\"", "_", url.getKey());
            assertThat(run.output().trim()).as(url.getKey()).isEqualTo(url.getValue());
        }
    }

    @Test
    void aUrlServicesShCannotParseIsNamedWithoutItsPassword() throws Exception {
        // An unescaped '/' in the password: what follows its ':' is read as the port, and the error quoted it.
        for (Map<String, String> env : List.of(Map.of("REDIS_URL", "redis://kage:Ab3/x9@127.0.0.1:6379"),
                Map.of("REDIS_URL", "http://kage:Ab3x9@127.0.0.1:6379"),
                Map.of("DATABASE_URL", "postgresql://kage:Ab3/x9@127.0.0.1/kage"),
                Map.of("DATABASE_URL", "mysql://kage:Ab3x9@127.0.0.1/kage"))) {
            Run run = run(env, "ops/services.sh", "status");
            assertThat(run.exit()).as(env.toString()).isNotZero();
            assertThat(run.output()).as(env.toString()).contains("ERROR: ").doesNotContain("Ab3").doesNotContain("x9");
        }
    }

    @Test
    void helpPrintsEachScriptsWholeHeaderAndNoCode() throws Exception {
        Run services = run(Map.of(), "ops/services.sh", "--help");
        assertThat(services.output()).contains("KAGE_SERVICES_TRUST_LOOPBACK").doesNotContain("set -euo pipefail");
        Run quickstart = run(Map.of(), "ops/quickstart.sh", "--help");
        assertThat(quickstart.output()).contains("MICRONAUT_SERVER_HOST").contains("ANTHROPIC_API_KEY")
                .doesNotContain("set -euo pipefail");
    }
}
