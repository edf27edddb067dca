package dev.kage.worker;

import static org.assertj.core.api.Assertions.assertThatCode;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kage.agent.AgentCatalog;
import dev.kage.agent.AgentConfig;
import dev.kage.agent.AgentType;
import dev.kage.agent.OutputFormat;
import dev.kage.agent.RetryPolicy;
import dev.kage.config.ConfigException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;

class WorkerFactoryTest {

    @Test
    void aNoopAgentHasNoProgramToCheckWhileAMissingProgramStopsStartUp() {
        AgentCatalog catalog = new AgentCatalog(List.of(
                agent("bench", AgentType.NOOP, List.of()),
                agent("ghost", AgentType.COMMAND, List.of("/no/such/program", "{prompt}"))));

        assertThatCode(() -> WorkerFactory.checkExecutables(settings("bench"), catalog)).doesNotThrowAnyException();
        assertThatThrownBy(() -> WorkerFactory.checkExecutables(settings("ghost"), catalog))
                .isInstanceOf(ConfigException.class)
                .hasMessageContaining("agent 'ghost': program '/no/such/program'");
    }

    @Test
    void theWorktreePoolSizeIsReadAndABadOneStopsStartUpNamingTheVariable() {
        AgentCatalog catalog = new AgentCatalog(List.of(agent("bench", AgentType.NOOP, List.of())));
        WorkerSettings unset = WorkerSettings.load(dev.kage.config.Env.of(java.util.Map.of()), catalog);
        org.assertj.core.api.Assertions.assertThat(unset.worktreePool(5)).as("one per slot").isEqualTo(5);
        org.assertj.core.api.Assertions.assertThat(unset.worktreePool(100)).isEqualTo(64);
        org.assertj.core.api.Assertions.assertThat(
                WorkerSettings.load(dev.kage.config.Env.of(java.util.Map.of("KAGE_WORKTREE_POOL", "3")), catalog).worktreePool(5)).isEqualTo(3);
        org.assertj.core.api.Assertions.assertThat(
                WorkerSettings.load(dev.kage.config.Env.of(java.util.Map.of("KAGE_WORKTREE_POOL", "0")), catalog).worktreePool(5)).isZero();
        for (String bad : List.of("-1", "65", "two")) {
            assertThatThrownBy(() -> WorkerSettings.load(dev.kage.config.Env.of(java.util.Map.of("KAGE_WORKTREE_POOL", bad)), catalog))
                    .isInstanceOf(ConfigException.class)
                    .hasMessageContaining("KAGE_WORKTREE_POOL=" + bad + ": must be an integer from 0 to 64");
        }
    }

    @Test
    void startLanesDefaultToTheSlotsAndABadValueStopsStartUpNamingTheVariable() {
        org.assertj.core.api.Assertions.assertThat(WorkerSettings.startLanes(dev.kage.config.Env.of(java.util.Map.of()), 5))
                .isEqualTo(5);
        org.assertj.core.api.Assertions.assertThat(
                WorkerSettings.startLanes(dev.kage.config.Env.of(java.util.Map.of("KAGE_START_LANES", "3")), 5)).isEqualTo(3);
        for (String bad : List.of("0", "-2", "1025", "many")) {
            assertThatThrownBy(() -> WorkerSettings.startLanes(dev.kage.config.Env.of(java.util.Map.of("KAGE_START_LANES", bad)), 5))
                    .isInstanceOf(ConfigException.class)
                    .hasMessageContaining("KAGE_START_LANES=" + bad + ": must be an integer from 1 to 1024");
        }
    }

    @Test
    void anHttpAgentsKeyMustBeSetAndFitAHeaderWhichANewlineAroundItDoesAfterTrimming() {
        AgentConfig base = agent("api", AgentType.ANTHROPIC, List.of());
        AgentConfig keyed = new AgentConfig(base.name(), base.type(), base.argv(), base.output(), List.of("PROVIDER_KEY"),
                "claude-x", base.encoding(), base.estimatedOutputTokens(), base.prices(), base.baseDir(), base.retry(),
                base.limits(), new AgentConfig.HttpEndpoint("http://127.0.0.1:1", "PROVIDER_KEY", 100), base.budget());
        java.util.function.Function<String, java.util.function.UnaryOperator<String>> env = value -> name ->
                "PROVIDER_KEY".equals(name) ? value : null;

        // A key from a file (a Kubernetes secret) ends in a newline: sent without it.
        org.assertj.core.api.Assertions.assertThat(dev.kage.worker.agent.HttpAgentClient.apiKey(keyed.endpoint(),
                env.apply("sk-secret-123\n"))).contains("sk-secret-123");
        assertThatCode(() -> WorkerFactory.checkApiKey("api", keyed, env.apply("sk-secret-123\r\n"))).doesNotThrowAnyException();
        for (String unset : new String[] {null, "", "  \n"}) {
            assertThatThrownBy(() -> WorkerFactory.checkApiKey("api", keyed, env.apply(unset)))
                    .isInstanceOf(ConfigException.class)
                    .hasMessageContaining("agent 'api': its api_key_env PROVIDER_KEY is not set");
        }
        // One no header can carry: refused naming the variable, never showing the value (the JDK's error quoted it whole).
        for (String bad : List.of("sk-secret\n123", "sk-secret\u0000123", "sk-secrét-123")) {
            assertThatThrownBy(() -> WorkerFactory.checkApiKey("api", keyed, env.apply(bad)))
                    .isInstanceOf(ConfigException.class)
                    .hasMessageContaining("agent 'api': PROVIDER_KEY (api_key_env) holds a character no HTTP header may carry")
                    .message().doesNotContain("secret");
        }
        AgentConfig keyless = new AgentConfig(base.name(), base.type(), base.argv(), base.output(), List.of(), "claude-x",
                base.encoding(), base.estimatedOutputTokens(), base.prices(), base.baseDir(), base.retry(), base.limits(),
                new AgentConfig.HttpEndpoint("http://127.0.0.1:1", null, 100), base.budget());
        assertThatCode(() -> WorkerFactory.checkApiKey("api", keyless, env.apply(null))).as("an endpoint that takes no key")
                .doesNotThrowAnyException();
    }

    @Test
    void theStartUpCheckCoversEveryVariableTheWorkerReadsLaterSoNoneFailsAfterItConnected() {
        java.util.function.Function<java.util.Map<String, String>, dev.kage.config.Env> env = extra -> {
            java.util.Map<String, String> values = new java.util.HashMap<>(java.util.Map.of("KAGE_AGENTS_FILE",
                    Path.of("..", "ops", "agents", "agents.yml").toAbsolutePath().normalize().toString(), "KAGE_WORKER_AGENTS", "demo"));
            values.putAll(extra);
            return dev.kage.config.Env.of(values);
        };
        assertThatCode(() -> WorkerApplication.checkConfiguration(env.apply(java.util.Map.of()))).doesNotThrowAnyException();
        for (var bad : List.of(java.util.Map.of("KAGE_START_LANES", "0"), java.util.Map.of("KAGE_CLOCK_OFFSET_MS", "soon"),
                java.util.Map.of("KAGE_CLOCK_OFFSET_MS", "99999999999999"), java.util.Map.of("KAGE_LOG_LEVEL", "inf0"),
                // Seconds past what a Duration's milliseconds hold: the shutdown, the reclaim loop and every hold's
                // lifetime failed on them long after start-up.
                java.util.Map.of("KAGE_SHUTDOWN_GRACE_SECONDS", "9223372036854775807"),
                java.util.Map.of("KAGE_RECLAIM_IDLE_SECONDS", "9223372036854775807"),
                java.util.Map.of("BUDGET_HOLD_GRACE_SECONDS", "9223372036854775807"),
                java.util.Map.of("TENANT_MAX_TOKENS_PER_DAY", "9223372036854775807"),
                java.util.Map.of("MAX_TOKENS_PER_TASK", "9223372036854775807"))) {
            String variable = bad.keySet().iterator().next();
            assertThatThrownBy(() -> WorkerApplication.checkConfiguration(env.apply(bad))).as(variable)
                    .isInstanceOf(ConfigException.class).hasMessageStartingWith(variable + "=");
        }
        assertThatCode(() -> WorkerApplication.checkConfiguration(env.apply(java.util.Map.of("KAGE_LOG_LEVEL", "warn"))))
                .doesNotThrowAnyException();
    }

    private static WorkerSettings settings(String agent) {
        return new WorkerSettings("w", Path.of("/tmp/kage-unused"), "", List.of(agent), false, Duration.ofSeconds(1), 0);
    }

    private static AgentConfig agent(String name, AgentType type, List<String> argv) {
        return new AgentConfig(name, type, argv, OutputFormat.TEXT, List.of(), "", "o200k_base", 1_000, 0, 0, Path.of("/"),
                RetryPolicy.DEFAULT);
    }
}
