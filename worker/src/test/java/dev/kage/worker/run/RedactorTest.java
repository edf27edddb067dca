package dev.kage.worker.run;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.List;
import org.junit.jupiter.api.Test;

/** What reaches rows and logs of an agent's output: no secret, whole or cut. */
class RedactorTest {
    private static final String KEY = "sk-ant-api03-SECRETvalue0123456789";
    private final Redactor redactor = new Redactor(List.of(KEY, "short"));

    @Test
    void aWholeSecretIsMaskedWhereverItStands() {
        assertThat(redactor.redact("auth " + KEY + " failed; retry with " + KEY)).isEqualTo("auth *** failed; retry with ***");
        assertThat(redactor.redact("a short word")).as("values under 6 characters are no secrets").isEqualTo("a short word");
        // A key read from a file ends in a newline; it is sent (and echoed back in an error) without it.
        assertThat(new Redactor(java.util.List.of("sk-live-123456\n")).redact("401: bad key sk-live-123456 given"))
                .isEqualTo("401: bad key *** given");
    }

    @Test
    void whatACutLeftOfASecretIsMaskedOnBothSidesOfTheCut() {
        // CappedOutput kept the head and the tail of a flood, and cut out the middle of the key.
        String capped = "header\nusing " + KEY.substring(0, 17) + "\n[... 424242 bytes omitted ...]\n" + KEY.substring(20)
                + " then done";
        String shown = redactor.redact(capped);
        assertThat(shown).isEqualTo("header\nusing ***\n[... 424242 bytes omitted ...]\n*** then done");
        // A stream's tail starts, and a patch's first 64 KiB end, inside a key.
        assertThat(redactor.redact(KEY.substring(9) + " was sent")).isEqualTo("*** was sent");
        assertThat(redactor.redact("+export KEY=" + KEY.substring(0, 12)
                + "\n[... 999 more bytes of the patch omitted ...]\n")).isEqualTo("+export KEY=***\n[... 999 more bytes of the patch omitted ...]\n");
        for (String shownText : List.of(shown, redactor.redact(KEY.substring(9)))) {
            for (int i = 0; i + Redactor.MIN_EDGE + 2 <= KEY.length(); i++) {
                assertThat(shownText).doesNotContain(KEY.substring(i, i + Redactor.MIN_EDGE + 2));
            }
        }
        assertThat(redactor.redact("sk-ant is a prefix too short to mask: sk-")).isEqualTo("sk-ant is a prefix too short to mask: sk-");
    }

    @Test
    void aUrlsCredentialsAreMaskedEvenWithoutConfiguredSecrets() {
        Redactor none = new Redactor(List.of());
        assertThat(none.redact("fatal: could not read from https://x-access-token:ghp_abc123@github.com/acme/app.git"))
                .isEqualTo("fatal: could not read from https://***@github.com/acme/app.git");
        assertThat(dev.kage.task.UrlCredentials.mask("ssh://deploy@git.example.com:22/app.git /srv/repo"))
                .isEqualTo("ssh://***@git.example.com:22/app.git /srv/repo");
        assertThat(none.redact("see https://github.com/acme/app and me@example.com")).isEqualTo(
                "see https://github.com/acme/app and me@example.com");
        assertThat(none.redact("{\"url\":\"https://a.com\",\"by\":\"me@x.com\"}")).as("compact JSON: nothing between")
                .isEqualTo("{\"url\":\"https://a.com\",\"by\":\"me@x.com\"}");
        assertThat(none.redact("xhttps://u:p@h and git+ssh://u@h")).isEqualTo("xhttps://***@h and git+ssh://***@h");
        String jwt = "oauth2:" + "eyJhbGciOiJSUzI1NiJ9.".repeat(20);
        assertThat(none.redact("clone https://" + jwt + "@dev.azure.com/acme/app")).isEqualTo("clone https://***@dev.azure.com/acme/app");
        // A password with an '@' left unescaped: git reads the userinfo up to the last '@', and so is it masked.
        assertThat(none.redact("fatal: https://bot:p@ss@github.com/x.git and https://u:a@b@c@h/")).isEqualTo(
                "fatal: https://***@github.com/x.git and https://***@h/");
        String many = "https://" + "a@".repeat(200_000) + " after";
        assertThat(none.redact(many)).as("one pass, however many '@'").isEqualTo("https://***@ after");
    }
}
