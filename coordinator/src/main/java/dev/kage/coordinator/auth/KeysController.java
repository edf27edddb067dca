package dev.kage.coordinator.auth;

import dev.kage.coordinator.api.QueryParameters;
import dev.kage.coordinator.api.ApiDocs;
import io.swagger.v3.oas.annotations.Operation;
import io.swagger.v3.oas.annotations.Parameter;
import io.swagger.v3.oas.annotations.enums.ParameterIn;
import io.swagger.v3.oas.annotations.media.ArraySchema;
import io.swagger.v3.oas.annotations.media.Content;
import io.swagger.v3.oas.annotations.media.ExampleObject;
import io.swagger.v3.oas.annotations.media.Schema;
import io.swagger.v3.oas.annotations.parameters.RequestBody;
import io.swagger.v3.oas.annotations.responses.ApiResponse;
import io.swagger.v3.oas.annotations.tags.Tag;
import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.databind.JsonNode;
import dev.kage.coordinator.api.ErrorBody;
import dev.kage.coordinator.api.ErrorBody.FieldError;
import dev.kage.coordinator.api.JsonBodies;
import dev.kage.coordinator.task.InvalidRequestException;
import io.micronaut.core.annotation.Nullable;
import io.micronaut.http.HttpRequest;
import io.micronaut.http.HttpResponse;
import io.micronaut.http.HttpStatus;
import io.micronaut.http.MediaType;
import io.micronaut.http.annotation.Body;
import io.micronaut.http.annotation.Controller;
import io.micronaut.http.annotation.Delete;
import io.micronaut.http.annotation.Get;
import io.micronaut.http.annotation.PathVariable;
import io.micronaut.http.annotation.Post;
import io.micronaut.http.annotation.QueryValue;
import io.micronaut.scheduling.TaskExecutors;
import io.micronaut.scheduling.annotation.ExecuteOn;
import io.micronaut.serde.annotation.Serdeable;
import io.micronaut.serde.config.naming.SnakeCaseStrategy;
import java.net.URI;
import java.time.Instant;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The tenants' API keys, for platform operators (scope {@code admin}): an admin key manages the keys of every tenant,
 * as it changes every tenant's budgets. {@code POST /api/v1/keys} creates a key and shows it once;
 * {@code GET /api/v1/keys} lists keys (prefix, never the key nor its digest); {@code DELETE /api/v1/keys/{id}} revokes
 * one (refused here at once, by other coordinators within {@code KAGE_API_KEY_CACHE_SECONDS}).
 */
@Controller("/api/v1/keys")
@Tag(name = "keys")
@ExecuteOn(TaskExecutors.BLOCKING)
public class KeysController {
    private static final Logger LOG = LoggerFactory.getLogger(KeysController.class);
    private static final Set<String> FIELDS = Set.of("tenant", "name", "scopes");

    private final ApiKeyStore store;
    private final KeyAuthenticator authenticator;

    public KeysController(ApiKeyStore store, KeyAuthenticator authenticator) {
        this.store = store;
        this.authenticator = authenticator;
    }

    /** 201 with the key (the only time it is shown) and a {@code Location}; 400 naming each bad field. */
    @Operation(operationId = "createKey", summary = "Create an API key",
            description = "For any tenant. The answer is the only time the key is shown; only its SHA-256 is stored.",
            requestBody = @RequestBody(required = true, content = @Content(mediaType = MediaType.APPLICATION_JSON,
                    schema = @Schema(implementation = KeyRequest.class), examples = @ExampleObject(name = "ci key", value = """
                            {"tenant": "acme", "name": "ci", "scopes": ["submit", "read"]}"""))))
    @ApiResponse(responseCode = "201", description = "Created; `key` is shown this once",
            headers = @io.swagger.v3.oas.annotations.headers.Header(name = "Location", description = "the key's URL"),
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = CreatedKey.class),
                    examples = @ExampleObject(name = "created", value = """
                            {"id": 7, "key": "kb_3xY9aQ2pLm4Nr7Tv1Wz8Bc5Df6Gh0Jk", "tenant": "acme", "name": "ci", \
                            "prefix": "kb_3xY9aQ2p", "scopes": ["submit", "read"], "created_at": "2025-06-10T08:00:00Z"}""")))
    @ApiResponse(responseCode = "400", description = "A bad field, named",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "field", value = """
                    {"error": "validation_failed", "message": "the request is invalid: scopes[1]", \
                    "errors": [{"field": "scopes[1]", "message": "'write' is not a scope; known: submit, read, admin"}]}""")))
    @ApiDocs.BodyTooLarge
    @ApiDocs.AdminErrors
    @RequiresScope(Scope.ADMIN)
    @Post(consumes = {MediaType.APPLICATION_JSON, MediaType.ALL}, produces = MediaType.APPLICATION_JSON)
    public HttpResponse<?> create(HttpRequest<?> request, @Parameter(hidden = true) @Nullable @Body byte[] body) {
        List<FieldError> errors = new ArrayList<>();
        JsonNode root = JsonBodies.object(body, FIELDS, errors);
        String tenant = text(root, "tenant", errors);
        String name = text(root, "name", errors);
        List<String> scopes = new ArrayList<>();
        JsonNode given = root.get("scopes");
        if (given != null && !given.isArray()) {
            errors.add(new FieldError("scopes", "an array of one or more of submit, read, admin"));
        } else if (given != null) {
            given.forEach(s -> scopes.add(s.isTextual() ? s.asText() : s.toString()));
        }
        Optional<NewKey> spec = NewKey.parse(tenant, name, scopes, errors);
        if (spec.isEmpty() || !errors.isEmpty()) {
            throw new InvalidRequestException(errors);
        }
        ApiKeyStore.Created created = store.create(spec.get().tenant(), spec.get().name(), spec.get().scopes());
        LOG.info("API key {} ({}…) created for tenant {} with scopes {} by a key of tenant {}", created.row().id(),
                created.row().prefix(), created.row().tenant(), Scope.describe(created.row().scopes()),
                ApiKeyFilter.principal(request).tenant());
        return HttpResponse.created(CreatedKey.of(created),
                URI.create("/api/v1/keys/" + created.row().id()));
    }

    /** Every tenant's keys, oldest first, revoked ones too; {@code ?tenant=} narrows to one tenant. */
    @Operation(operationId = "listKeys", summary = "List API keys",
            parameters = @Parameter(name = "tenant", in = ParameterIn.QUERY, example = "acme",
                    description = "only this tenant's keys", schema = @Schema(type = "string")),
            description = "Every tenant's keys, oldest first, revoked ones too; never a key or its digest.")
    @ApiResponse(responseCode = "200", description = "The keys",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = Keys.class),
                    examples = @ExampleObject(name = "keys", value = """
                            {"keys": [{"id": 7, "tenant": "acme", "name": "ci", "prefix": "kb_3xY9aQ2p", "scopes": ["submit", "read"], \
                            "created_at": "2025-06-10T08:00:00Z", "revoked_at": null, "last_used_at": "2025-06-10T09:12:00Z"}]}""")))
    @ApiResponse(responseCode = "400", description = "A bad `tenant`, named",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "tenant", value = """
                    {"error": "validation_failed", "message": "the request is invalid: tenant", \
                    "errors": [{"field": "tenant", "message": "1-64 letters, digits, '.', '_' or '-'"}]}""")))
    @ApiDocs.AdminErrors
    @RequiresScope(Scope.ADMIN)
    @QueryParameters("tenant")
    @Get(produces = MediaType.APPLICATION_JSON)
    public HttpResponse<?> list(@Parameter(hidden = true) @Nullable @QueryValue String tenant) {
        if (tenant != null && !ApiKeys.TENANT.matcher(tenant).matches()) {
            throw new InvalidRequestException(List.of(new FieldError("tenant", ApiKeys.TENANT_RULE)));
        }
        return HttpResponse.ok(new Keys(store.list(Optional.ofNullable(tenant)).stream().map(KeyView::of).toList()));
    }

    /** 200 with the revoked key (revoking again keeps the first time); 404 for an unknown id. */
    @Operation(operationId = "revokeKey", summary = "Revoke an API key",
            parameters = @Parameter(schema = @Schema(type = "string"), name = "id", in = ParameterIn.PATH,
                    example = "7", description = "the key's id"),
            description = "Refused by this coordinator at once, by the others within `KAGE_API_KEY_CACHE_SECONDS`. Revoking "
                    + "again keeps the first `revoked_at`.")
    @ApiResponse(responseCode = "200", description = "The revoked key",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = KeyView.class),
                    examples = @ExampleObject(name = "revoked", value = """
                            {"id": 7, "tenant": "acme", "name": "ci", "prefix": "kb_3xY9aQ2p", "scopes": ["submit", "read"], \
                            "created_at": "2025-06-10T08:00:00Z", "revoked_at": "2025-06-11T10:00:00Z", "last_used_at": "2025-06-10T09:12:00Z"}""")))
    @ApiResponse(responseCode = "404", description = "No key with that id",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "unknown", value = """
                    {"error": "not_found", "message": "no API key 99", "errors": []}""")))
    @ApiDocs.AdminErrors
    @RequiresScope(Scope.ADMIN)
    @dev.kage.coordinator.api.ApiDocs.QueryParameterErrors
    @Delete(value = "/{id}", produces = MediaType.APPLICATION_JSON)
    public HttpResponse<?> revoke(HttpRequest<?> request, @PathVariable String id) {
        Optional<ApiKeyStore.KeyRow> revoked = parseId(id).flatMap(store::revoke);
        if (revoked.isEmpty()) {
            return HttpResponse.status(HttpStatus.NOT_FOUND).body(ErrorBody.of("not_found", "no API key " + ErrorBody.printable(id)));
        }
        authenticator.forget(revoked.get().id());
        LOG.info("API key {} ({}…) of tenant {} revoked by a key of tenant {}", revoked.get().id(), revoked.get().prefix(),
                revoked.get().tenant(), ApiKeyFilter.principal(request).tenant());
        return HttpResponse.ok(KeyView.of(revoked.get()));
    }

    private static String text(JsonNode root, String field, List<FieldError> errors) {
        JsonNode value = root.get(field);
        if (value == null || value.isNull()) {
            return null;
        }
        if (!value.isTextual()) {
            errors.add(new FieldError(field, "must be a string"));
            return null;
        }
        return value.asText();
    }

    private static Optional<Long> parseId(String id) {
        try {
            long value = Long.parseLong(id);
            return value > 0 ? Optional.of(value) : Optional.empty();
        } catch (NumberFormatException e) {
            return Optional.empty();
        }
    }


    /**
     * The {@code POST} body, for the OpenAPI document only ({@link #create} reads the bytes by hand).
     *
     * @param tenant 1-64 letters, digits, '.', '_' or '-'
     * @param name   what the key is for, at most 100 characters
     * @param scopes one or more of {@code submit}, {@code read}, {@code admin}
     */
    @Schema(name = "KeyRequest")
    record KeyRequest(String tenant, @Nullable String name,
                      @ArraySchema(schema = @Schema(allowableValues = {"submit", "read", "admin"})) List<String> scopes) {
    }

    @Serdeable(naming = SnakeCaseStrategy.class)
    public record Keys(List<KeyView> keys) {
    }

    /**
     * A key as an operator sees it: never the key nor its digest.
     *
     * @param prefix    the key's first characters, to tell keys apart
     * @param revokedAt {@code null} while active
     */
    @Serdeable(naming = SnakeCaseStrategy.class)
    @JsonInclude(JsonInclude.Include.ALWAYS)
    public record KeyView(long id, String tenant, String name, String prefix, List<String> scopes, Instant createdAt,
                          Instant revokedAt, Instant lastUsedAt) {
        static KeyView of(ApiKeyStore.KeyRow row) {
            List<String> scopes = row.scopes().isEmpty() ? List.of()
                    : EnumSet.copyOf(row.scopes()).stream().map(Scope::wireName).toList();
            return new KeyView(row.id(), row.tenant(), row.name(), row.prefix(), scopes, row.createdAt(), row.revokedAt(),
                    row.lastUsedAt());
        }
    }

    /**
     * @param key the secret: shown in this answer only, never again
     */
    @Serdeable(naming = SnakeCaseStrategy.class)
    @JsonInclude(JsonInclude.Include.ALWAYS)
    public record CreatedKey(long id, String key, String tenant, String name, String prefix, List<String> scopes,
                             Instant createdAt) {
        static CreatedKey of(ApiKeyStore.Created created) {
            KeyView view = KeyView.of(created.row());
            return new CreatedKey(view.id(), created.key(), view.tenant(), view.name(), view.prefix(), view.scopes(),
                    view.createdAt());
        }
    }
}
