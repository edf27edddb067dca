package dev.kage.docs;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * README.md stays whole and true to the code: every in-page link has its heading, and every {@code KAGE_*} variable the
 * processes read is documented (a cut README lost every variable after one row, and nothing noticed).
 */
class ReadmeTest {
    private static final Path ROOT = Path.of("..").toAbsolutePath().normalize();

    @Test
    void everyInPageLinkHasItsHeading() throws IOException {
        String readme = Files.readString(ROOT.resolve("README.md"));
        Set<String> anchors = new TreeSet<>();
        Matcher heading = Pattern.compile("(?m)^#{1,6} (.+)$").matcher(readme);
        while (heading.find()) {
            anchors.add(heading.group(1).trim().toLowerCase(Locale.ROOT).replaceAll("[^a-z0-9 _-]", "").replace(' ', '-'));
        }
        Set<String> missing = new TreeSet<>();
        Matcher link = Pattern.compile("\\]\\(#([^)]+)\\)").matcher(readme);
        while (link.find()) {
            if (!anchors.contains(link.group(1))) {
                missing.add(link.group(1));
            }
        }
        assertThat(missing).as("links to headings that do not exist (headings: %s)", anchors).isEmpty();
    }

    @Test
    void everyKageVariableTheProcessesReadIsDocumented() throws IOException {
        String readme = Files.readString(ROOT.resolve("README.md"));
        Set<String> read = new TreeSet<>();
        Pattern literal = Pattern.compile("\"(KAGE_[A-Z0-9_]+)\"");
        for (String module : new String[] {"shared", "coordinator", "worker", "client"}) {
            try (Stream<Path> files = Files.walk(ROOT.resolve(module).resolve("src/main/java"))) {
                for (Path file : files.filter(p -> p.toString().endsWith(".java")).toList()) {
                    Matcher m = literal.matcher(Files.readString(file));
                    while (m.find()) {
                        read.add(m.group(1));
                    }
                }
            }
        }
        assertThat(read).as("variables read").contains("KAGE_REPO_ALLOW", "KAGE_DEFAULT_REPO", "KAGE_LOG_LEVEL");
        assertThat(read.stream().filter(v -> !readme.contains(v)).toList()).as("read but not in README.md").isEmpty();
    }
}
