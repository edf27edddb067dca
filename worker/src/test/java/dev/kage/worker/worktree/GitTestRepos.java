package dev.kage.worker.worktree;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Makes small real git repositories for tests. */
public final class GitTestRepos {
    private GitTestRepos() {
    }

    /** A repository at {@code path} with one commit on {@code main}. */
    public static Path create(Path path) throws IOException {
        Files.createDirectories(path);
        Git.run(path, "init", "--quiet", "-b", "main");
        Files.writeString(path.resolve("README.md"), "# test repo\n");
        Git.run(path, "add", "README.md");
        Git.run(path, "-c", "user.name=Test", "-c", "user.email=test@localhost", "commit", "--quiet", "-m", "init");
        return path;
    }

    /** What git says, for assertions. */
    public static String git(Path cwd, String... args) {
        return Git.run(cwd, args);
    }
}
