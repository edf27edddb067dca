package dev.kage.client;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;

/** {@code kage keys create|list|revoke}: {@code /api/v1/keys}, which needs a key with scope {@code admin}. */
@Command(name = "keys", mixinStandardHelpOptions = true,
        description = "Manage API keys (needs a key with scope admin). Without any key: ops/kage-admin.sh.",
        subcommands = {KeysCommand.Create.class, KeysCommand.ListKeys.class, KeysCommand.Revoke.class})
final class KeysCommand implements Callable<Integer> {
    @ParentCommand
    Kage kage;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() {
        spec.commandLine().usage(spec.commandLine().getErr());
        return ExitCodes.USAGE;
    }

    @Command(name = "create", mixinStandardHelpOptions = true,
            description = {"Create a key. Prints the key alone on standard output (KEY=$(kage keys create ...)) and what it is "
                    + "on standard error; the server shows it this once."})
    static final class Create implements Callable<Integer> {
        @ParentCommand
        KeysCommand keys;

        @Option(names = "--tenant", required = true, paramLabel = "TENANT", description = "the tenant the key acts for")
        String tenant;

        @Option(names = "--scopes", required = true, split = ",", paramLabel = "SCOPE",
                description = "submit, read, admin (comma-separated or repeated)")
        List<String> scopes;

        @Option(names = "--name", paramLabel = "NAME", description = "what the key is for, e.g. ci")
        String name;

        @Override
        public Integer call() {
            ObjectNode body = ApiClient.JSON.createObjectNode().put("tenant", tenant);
            if (name != null) {
                body.put("name", name);
            }
            scopes.forEach(body.putArray("scopes")::add);
            JsonNode created = keys.kage.api().post("/api/v1/keys", body, Map.of()).body();
            keys.kage.err().println("key " + created.path("id").asText() + " for tenant " + created.path("tenant").asText()
                    + ", scopes " + String.join(",", texts(created.path("scopes"))) + ", prefix " + created.path("prefix").asText()
                    + ": shown this once, keep it now");
            keys.kage.err().flush();
            keys.kage.out().println(created.path("key").asText());
            keys.kage.out().flush();
            return ExitCodes.OK;
        }
    }

    @Command(name = "list", mixinStandardHelpOptions = true,
            description = "List keys, revoked ones too: id, tenant, prefix, scopes, name, created, revoked, last used. Never a key.")
    static final class ListKeys implements Callable<Integer> {
        @ParentCommand
        KeysCommand keys;

        @Option(names = "--tenant", paramLabel = "TENANT", description = "only this tenant's keys")
        String tenant;

        @Option(names = "--json", description = "print the API's JSON as it came")
        boolean json;

        @Override
        public Integer call() {
            ApiClient.Response response = keys.kage.api().get(ApiClient.withQuery("/api/v1/keys", ApiClient.params("tenant", tenant)));
            keys.kage.out().print(json ? response.text() + "\n" : Format.keys(response.body()));
            keys.kage.out().flush();
            return ExitCodes.OK;
        }
    }

    @Command(name = "revoke", mixinStandardHelpOptions = true,
            description = "Revoke a key by its id (kage keys list). Every coordinator refuses it within KAGE_API_KEY_CACHE_SECONDS.")
    static final class Revoke implements Callable<Integer> {
        @ParentCommand
        KeysCommand keys;

        @Parameters(index = "0", paramLabel = "ID")
        long id;

        @Override
        public Integer call() {
            JsonNode key = keys.kage.api().delete("/api/v1/keys/" + id).body();
            keys.kage.out().println("key " + key.path("id").asText() + " (" + key.path("prefix").asText() + "…) of tenant "
                    + key.path("tenant").asText() + " revoked at " + key.path("revoked_at").asText());
            keys.kage.out().flush();
            return ExitCodes.OK;
        }
    }

    private static List<String> texts(JsonNode array) {
        List<String> out = new java.util.ArrayList<>();
        array.forEach(item -> out.add(item.asText()));
        return out;
    }
}
