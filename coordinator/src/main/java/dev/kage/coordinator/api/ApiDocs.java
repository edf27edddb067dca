package dev.kage.coordinator.api;

import io.swagger.v3.oas.annotations.headers.Header;
import io.swagger.v3.oas.annotations.media.Content;
import io.swagger.v3.oas.annotations.media.ExampleObject;
import io.swagger.v3.oas.annotations.media.Schema;
import io.swagger.v3.oas.annotations.responses.ApiResponse;
import java.lang.annotation.Documented;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * The error answers every {@code /api} route shares, for the OpenAPI document (read by micronaut-openapi at compile
 * time): a route carries the one matching its {@code @RequiresScope} — 401 without a valid {@code X-API-Key}, 403
 * naming that scope, 503 while Postgres (the key check, the data) or Redis is down — and adds its own 400/404/409/422
 * with {@link #ERROR} as the schema. {@code OpenApiDocumentTest} checks that each route's 403 names its scope.
 */
public final class ApiDocs {
    /** Media type of every error body. */
    public static final String JSON = "application/json";
    /** The error body's schema, for {@code @Schema(implementation = ...)}. */
    public static final Class<ErrorBody> ERROR = ErrorBody.class;

    public static final String UNAUTHORIZED_MISSING = """
            {"error": "unauthorized", "message": "missing X-API-Key header", "errors": []}""";
    public static final String UNAUTHORIZED_INVALID = """
            {"error": "unauthorized", "message": "invalid API key", "errors": []}""";
    public static final String FORBIDDEN_READ = """
            {"error": "forbidden", "message": "this needs an API key with scope 'read'; this key has: submit", "errors": []}""";
    public static final String FORBIDDEN_SUBMIT = """
            {"error": "forbidden", "message": "this needs an API key with scope 'submit'; this key has: read", "errors": []}""";
    public static final String FORBIDDEN_ADMIN = """
            {"error": "forbidden", "message": "this needs an API key with scope 'admin'; this key has: submit, read \
            (an admin key: created with scope admin, or a KAGE_API_KEYS key of a tenant in KAGE_ADMIN_TENANTS)", \
            "errors": []}""";
    public static final String DATABASE_UNAVAILABLE = """
            {"error": "database_unavailable", "message": "the database is unavailable; retry shortly", "errors": []}""";
    public static final String REDIS_UNAVAILABLE = """
            {"error": "redis_unavailable", "message": "Redis is unavailable; retry shortly", "errors": []}""";
    public static final String PAYLOAD_TOO_LARGE = """
            {"error": "payload_too_large", "message": "The content length [2000051] exceeds the maximum allowed content length \
            [1048576]", "errors": []}""";
    public static final String BODY_NOT_JSON = """
            {"error": "validation_failed", "message": "the request is invalid: body: not valid JSON", \
            "errors": [{"field": "body", "message": "not valid JSON: Unexpected end-of-input"}]}""";

    private ApiDocs() {
    }

    /** Routes with {@code @RequiresScope(Scope.READ)}. */
    @Documented
    @Retention(RetentionPolicy.RUNTIME)
    @Target(ElementType.METHOD)
    @ApiResponse(responseCode = "401", description = "No `X-API-Key` header, or a key that is unknown or revoked",
            content = @Content(mediaType = JSON, schema = @Schema(implementation = ErrorBody.class), examples = {
                    @ExampleObject(name = "missing", value = UNAUTHORIZED_MISSING),
                    @ExampleObject(name = "invalid", value = UNAUTHORIZED_INVALID)}))
    @ApiResponse(responseCode = "403", description = "The key lacks scope `read`",
            content = @Content(mediaType = JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "scope", value = FORBIDDEN_READ)))
    @ApiResponse(responseCode = "503", description = "Postgres or Redis is unavailable; retry after `Retry-After` seconds",
            headers = @Header(name = "Retry-After", description = "seconds", schema = @Schema(type = "integer")),
            content = @Content(mediaType = JSON, schema = @Schema(implementation = ErrorBody.class), examples = {
                    @ExampleObject(name = "database", value = DATABASE_UNAVAILABLE),
                    @ExampleObject(name = "redis", value = REDIS_UNAVAILABLE)}))
    public @interface ReadErrors {
    }

    /** Routes with {@code @RequiresScope(Scope.SUBMIT)}. */
    @Documented
    @Retention(RetentionPolicy.RUNTIME)
    @Target(ElementType.METHOD)
    @ApiResponse(responseCode = "401", description = "No `X-API-Key` header, or a key that is unknown or revoked",
            content = @Content(mediaType = JSON, schema = @Schema(implementation = ErrorBody.class), examples = {
                    @ExampleObject(name = "missing", value = UNAUTHORIZED_MISSING),
                    @ExampleObject(name = "invalid", value = UNAUTHORIZED_INVALID)}))
    @ApiResponse(responseCode = "403", description = "The key lacks scope `submit`",
            content = @Content(mediaType = JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "scope", value = FORBIDDEN_SUBMIT)))
    @ApiResponse(responseCode = "503", description = "Postgres or Redis is unavailable; retry after `Retry-After` seconds",
            headers = @Header(name = "Retry-After", description = "seconds", schema = @Schema(type = "integer")),
            content = @Content(mediaType = JSON, schema = @Schema(implementation = ErrorBody.class), examples = {
                    @ExampleObject(name = "database", value = DATABASE_UNAVAILABLE),
                    @ExampleObject(name = "redis", value = REDIS_UNAVAILABLE)}))
    public @interface SubmitErrors {
    }

    /** Routes with {@code @RequiresScope(Scope.ADMIN)}. */
    @Documented
    @Retention(RetentionPolicy.RUNTIME)
    @Target(ElementType.METHOD)
    @ApiResponse(responseCode = "401", description = "No `X-API-Key` header, or a key that is unknown or revoked",
            content = @Content(mediaType = JSON, schema = @Schema(implementation = ErrorBody.class), examples = {
                    @ExampleObject(name = "missing", value = UNAUTHORIZED_MISSING),
                    @ExampleObject(name = "invalid", value = UNAUTHORIZED_INVALID)}))
    @ApiResponse(responseCode = "403", description = "The key lacks scope `admin`",
            content = @Content(mediaType = JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "scope", value = FORBIDDEN_ADMIN)))
    @ApiResponse(responseCode = "503", description = "Postgres or Redis is unavailable; retry after `Retry-After` seconds",
            headers = @Header(name = "Retry-After", description = "seconds", schema = @Schema(type = "integer")),
            content = @Content(mediaType = JSON, schema = @Schema(implementation = ErrorBody.class), examples = {
                    @ExampleObject(name = "database", value = DATABASE_UNAVAILABLE),
                    @ExampleObject(name = "redis", value = REDIS_UNAVAILABLE)}))
    public @interface AdminErrors {
    }

    public static final String UNKNOWN_QUERY_PARAMETER = """
            {"error": "validation_failed", "message": "the request is invalid: agnet: is not a parameter of this route; it \
            takes agent, limit", "errors": [{"field": "agnet", "message": "is not a parameter of this route; it takes agent, \
            limit"}]}""";

    /**
     * Routes with no 400 of their own: every {@code /api} route refuses a query parameter it does not read, or one it
     * reads given twice ({@link QueryParameterFilter}).
     */
    @Documented
    @Retention(RetentionPolicy.RUNTIME)
    @Target(ElementType.METHOD)
    @ApiResponse(responseCode = "400", description = "A query parameter this route does not read, or one given twice",
            content = @Content(mediaType = JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "unknown parameter", value = UNKNOWN_QUERY_PARAMETER)))
    public @interface QueryParameterErrors {
    }

    /** The event streams: a tenant holding {@code KAGE_MAX_EVENT_STREAMS_PER_TENANT} of them gets a 429 for one more. */
    @Documented
    @Retention(RetentionPolicy.RUNTIME)
    @Target(ElementType.METHOD)
    @ApiResponse(responseCode = "429", description = "The tenant holds `KAGE_MAX_EVENT_STREAMS_PER_TENANT` event streams on "
            + "this coordinator already (default 500); `Retry-After: 15`",
            content = @Content(mediaType = JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "too many streams", value = """
                    {"error": "too_many_streams", "message": "this tenant holds 500 event streams on this coordinator already \
                    (KAGE_MAX_EVENT_STREAMS_PER_TENANT); close one, or follow every task of the tenant on one stream: \
                    GET /api/v1/events", "errors": []}""")))
    public @interface TooManyStreams {
    }

    /** Routes that read a body: over {@code micronaut.server.max-request-size} (1 MiB) is a 413. */
    @Documented
    @Retention(RetentionPolicy.RUNTIME)
    @Target(ElementType.METHOD)
    @ApiResponse(responseCode = "413", description = "The body is larger than 1 MiB",
            content = @Content(mediaType = JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "too large", value = PAYLOAD_TOO_LARGE)))
    public @interface BodyTooLarge {
    }
}
