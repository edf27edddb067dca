package dev.kage.coordinator.task;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kage.config.ConfigException;
import dev.kage.config.Env;
import java.util.Map;
import org.junit.jupiter.api.Test;

class RepoPolicyTest {
    private static RepoPolicy policy(String value) {
        return RepoPolicy.load(Env.of(Map.of(RepoPolicy.VARIABLE, value)));
    }

    @Test
    void unsetEveryRepositoryIsAccepted() {
        assertThat(RepoPolicy.load(Env.of(Map.of())).refusal("acme", "/srv/anything", "repo")).isEmpty();
    }

    @Test
    void setATenantUsesItsOwnPrefixesAndTheSharedOnesOnly() {
        RepoPolicy policy = policy(" acme=https://github.com/acme/  acme=/srv/repos/acme/\n*=https://github.com/public/ globex=git@github.com:globex/ ");
        assertThat(policy.refusal("acme", "https://github.com/acme/app.git", "repo")).isEmpty();
        assertThat(policy.refusal("acme", "/srv/repos/acme/app", "repo")).isEmpty();
        assertThat(policy.refusal("acme", "https://github.com/public/lib.git", "repo")).isEmpty();
        assertThat(policy.refusal("globex", "git@github.com:globex/app.git", "repo")).isEmpty();
        assertThat(policy.refusal("acme", null, "repo")).as("the workers' default repository").isEmpty();

        assertThat(policy.refusal("globex", "https://github.com/acme/app.git", "repo")).hasValueSatisfying(e -> {
            assertThat(e.field()).isEqualTo("repo");
            assertThat(e.message()).contains("is not a repository this tenant may use").contains("git@github.com:globex/");
        });
        assertThat(policy.refusal("acme", "https://github.com/acme-other/x.git", "repo")).isPresent();
        assertThat(policy.refusal("acme", "/srv/repos/acme/../globex/app", "tasks[2].repo"))
                .hasValueSatisfying(e -> assertThat(e.field()).isEqualTo("tasks[2].repo"));
        assertThat(policy.refusal("acme", "/srv/repos/acme/%2e%2e/globex", "repo")).isPresent();
        assertThat(policy.refusal("initech", "https://github.com/acme/app.git", "repo")).isPresent();
    }

    @Test
    void aBadEntryStopsStartUpNamingTheVariable() {
        for (String bad : new String[] {"https://github.com/acme/", "acme=", "acme=https://github.com/acme",
                "a b=/srv/", "acme=/srv/../x/"}) {
            assertThatThrownBy(() -> policy(bad)).as(bad).isInstanceOf(ConfigException.class)
                    .hasMessageStartingWith("KAGE_REPO_ALLOW: ");
        }
    }
}
