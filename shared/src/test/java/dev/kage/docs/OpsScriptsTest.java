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

    /**
     * A redis-server, initdb or Debian cluster older than Kage supports is refused before it is started: started, it was
     * refused only once it answered, and left running on the port (the next {@code up} found it there and refused it
     * again). The binaries are fakes that say their version and record any other call.
     */
    @Test
    void serversTooOldAreRefusedBeforeTheyAreStarted(@org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
        Path bin = java.nio.file.Files.createDirectories(dir.resolve("bin"));
        Path started = dir.resolve("started");
        fake(bin.resolve("redis-server"), "Redis server v=6.2.14 sha=00000000:0 malloc=jemalloc-5.2.1 bits=64", started);
        fake(bin.resolve("initdb"), "initdb (PostgreSQL) 13.16 (Debian 13.16-0+deb11u1)", started);
        fake(bin.resolve("pg_ctlcluster"), "", started);
        int port;
        try (var socket = new java.net.ServerSocket(0)) {
            port = socket.getLocalPort(); // free once closed: nothing answers there
        }
        Map<String, String> env = Map.of("PATH", bin + ":" + System.getenv("PATH"), "KAGE_STATE_DIR", dir.resolve("state").toString(),
                "KAGE_SERVICES_NO_INSTALL", "1", "REDIS_URL", "redis://127.0.0.1:" + port,
                "DATABASE_URL", "postgresql://postgres@127.0.0.1:" + port + "/kage");
        Run redis = run(env, "bash", "-c", "source ops/services.sh && redis_up");
        assertThat(redis.exit()).isNotZero();
        assertThat(redis.output()).contains("is version 6.2.14").contains("needs Redis >= 7").contains("not started");
        Run cluster = run(env, "bash", "-c", "source ops/services.sh && parse_database_url \"$DATABASE_URL\" && "
                + "pg_start_debian_cluster 13 main");
        assertThat(cluster.exit()).isNotZero();
        assertThat(cluster.output()).contains("Debian cluster 13/main").contains("needs PostgreSQL >= 14");
        // The newest binaries found are the fake's (pg_bindir stands for the search of /usr/lib/postgresql/*/bin).
        Run fresh = run(env, "bash", "-c", "source ops/services.sh && parse_database_url \"$DATABASE_URL\" && "
                + "pg_bindir() { printf '%s\\n' " + bin + "; } && pg_start_private");
        assertThat(fresh.exit()).isNotZero();
        assertThat(fresh.output()).contains("is PostgreSQL 13.16").contains("needs PostgreSQL >= 14");
        assertThat(started).doesNotExist();
        assertThat(dir.resolve("state").resolve("redis-" + port + ".started")).doesNotExist();
    }

    /**
     * A Debian cluster configured on DATABASE_URL's port that runs but does not answer at its address (it listens
     * elsewhere) is left alone: not started again, not recorded as started here (a {@code down} would have stopped the
     * system's Postgres), no private cluster put beside it.
     */
    @Test
    void aDebianClusterRunningElsewhereIsNeitherStartedNorRecorded(@org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
        Path bin = java.nio.file.Files.createDirectories(dir.resolve("bin"));
        Path started = dir.resolve("started");
        int port;
        try (var socket = new java.net.ServerSocket(0)) {
            port = socket.getLocalPort();
        }
        fake(bin.resolve("pg_ctlcluster"), "", started);
        java.nio.file.Files.writeString(bin.resolve("pg_lsclusters"), """
                #!/usr/bin/env bash
                echo '15 main %d online postgres /var/lib/postgresql/15/main /var/log/postgresql/postgresql-15-main.log'
                """.formatted(port));
        java.nio.file.Files.setPosixFilePermissions(bin.resolve("pg_lsclusters"),
                java.nio.file.attribute.PosixFilePermissions.fromString("rwxr-xr-x"));
        Path state = dir.resolve("state");
        Run run = run(Map.of("PATH", bin + ":" + System.getenv("PATH"), "KAGE_STATE_DIR", state.toString(),
                "KAGE_SERVICES_NO_INSTALL", "1", "KAGE_SERVICES_WAIT", "1",
                "DATABASE_URL", "postgresql://postgres@127.0.0.1:" + port + "/kage"), "bash", "-c", "source ops/services.sh && pg_up");
        assertThat(run.exit()).isNotZero();
        assertThat(run.output()).contains("Debian cluster 15/main on port " + port + " is online but does not answer");
        assertThat(started).doesNotExist();
        assertThat(state.resolve("postgres-" + port + ".started")).doesNotExist();
        assertThat(state.resolve("postgres-" + port)).doesNotExist();
    }

    /** An executable that prints {@code version} for --version and appends any other call's arguments to {@code calls}. */
    private static void fake(Path file, String version, Path calls) throws Exception {
        java.nio.file.Files.writeString(file, """
                #!/usr/bin/env bash
                if [[ ${1:-} == --version || ${1:-} == -V ]]; then echo '%s'; exit 0; fi
                echo "$0 $*" >> '%s'
                exit 0
                """.formatted(version, calls));
        java.nio.file.Files.setPosixFilePermissions(file, java.nio.file.attribute.PosixFilePermissions.fromString("rwxr-xr-x"));
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
