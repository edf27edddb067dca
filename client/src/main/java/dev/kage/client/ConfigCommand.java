package dev.kage.client;

import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.ParentCommand;

/** {@code kage config}: the URL and key in use and where each came from; the key only by its prefix. */
@Command(name = "config", mixinStandardHelpOptions = true,
        description = "Show the URL and API key kage uses and where each comes from (the key only by its first characters).")
final class ConfigCommand implements Callable<Integer> {
    @ParentCommand
    Kage kage;

    @Override
    public Integer call() {
        ClientConfig config = kage.config();
        kage.out().println("url     " + config.url() + "  (" + config.urlSource() + ")");
        kage.out().println("key     " + (config.key() == null ? "none: set " + ClientConfig.KEY_ENV + ", key= in the config file, or --key"
                : ClientConfig.keyPrefix(config.key()) + "  (" + config.keySource() + ")"));
        kage.out().println("config  " + config.file() + (java.nio.file.Files.isRegularFile(config.file()) ? "" : "  (absent)"));
        kage.out().flush();
        return ExitCodes.OK;
    }
}
