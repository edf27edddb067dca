package dev.kage.coordinator.api;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kage.coordinator.auth.RequiresScope;
import dev.kage.coordinator.auth.Scope;
import io.micronaut.web.router.Router;
import io.micronaut.web.router.UriRouteInfo;
import io.swagger.v3.oas.models.OpenAPI;
import io.swagger.v3.oas.models.Operation;
import io.swagger.v3.oas.models.PathItem;
import io.swagger.v3.oas.models.media.Content;
import io.swagger.v3.oas.models.media.MediaType;
import io.swagger.v3.oas.models.media.Schema;
import io.swagger.v3.oas.models.responses.ApiResponse;
import io.swagger.v3.oas.models.security.SecurityScheme;
import io.swagger.v3.parser.OpenAPIV3Parser;
import io.swagger.v3.parser.core.models.ParseOptions;
import io.swagger.v3.parser.core.models.SwaggerParseResult;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The OpenAPI document micronaut-openapi generates from the controllers: served without a key, valid OpenAPI 3, one
 * operation for every {@code /api} route the router has (and none it lacks), each with a summary, examples, and its
 * errors in the {@link ErrorBody} shape (401, and 403 naming the route's own scope); examples and real answers have the
 * fields the schemas name. The Swagger UI page and its assets are served from the jar.
 */
class OpenApiDocumentTest {
    static final String DOCUMENT = "/swagger/kage-coordinator.yml";
    static final String UI = "/swagger-ui/index.html";
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String KEY = "ops-key-123";
    private static TestCoordinator coordinator;
    private static HttpResponse<String> served;
    private static OpenAPI api;

    @BeforeAll
    static void start() throws Exception {
        coordinator = new TestCoordinator("ops:" + KEY, Map.of("KAGE_ADMIN_TENANTS", "ops"));
        served = anonymous(DOCUMENT);
        ParseOptions options = new ParseOptions();
        options.setResolve(false); // keep the $refs: the checks below follow them to the components
        SwaggerParseResult parsed = new OpenAPIV3Parser().readContents(served.body(), null, options);
        assertThat(parsed.getMessages()).as("parser messages").isEmpty();
        api = parsed.getOpenAPI();
    }

    @AfterAll
    static void stop() {
        coordinator.close();
    }

    @Test
    void theDocumentIsServedWithoutAKeyAndIsValidOpenApi3() {
        assertThat(served.statusCode()).isEqualTo(200);
        assertThat(api).isNotNull();
        assertThat(api.getOpenapi()).startsWith("3.");
        assertThat(api.getInfo().getTitle()).isEqualTo("Kage Bunshin coordinator API");
        SecurityScheme scheme = api.getComponents().getSecuritySchemes().get("apiKey");
        assertThat(scheme.getType()).isEqualTo(SecurityScheme.Type.APIKEY);
        assertThat(scheme.getIn()).isEqualTo(SecurityScheme.In.HEADER);
        assertThat(scheme.getName()).isEqualTo("X-API-Key");
        assertThat(api.getSecurity()).anySatisfy(requirement -> assertThat(requirement).containsKey("apiKey"));
        assertThat(api.getComponents().getSchemas()).containsKey("ErrorBody");
    }

    @Test
    void everyApiRouteIsDocumentedWithExamplesAndItsErrors() {
        List<String> wrong = new ArrayList<>();
        Set<String> routed = new TreeSet<>();
        for (UriRouteInfo<?, ?> route : coordinator.context().getBean(Router.class).uriRoutes().toList()) {
            String path = route.getUriMatchTemplate().toString().replaceAll("\\{\\?[^}]*}", "");
            String method = route.getHttpMethodName();
            if (!path.startsWith("/api/") || method.equals("HEAD")) {
                continue; // HEAD is GET without a body
            }
            routed.add(method + " " + path);
            String name = method + " " + path + ": ";
            PathItem item = api.getPaths().get(path);
            Operation operation = item == null ? null : item.readOperationsMap().get(PathItem.HttpMethod.valueOf(method));
            if (operation == null) {
                wrong.add(name + "not in the document");
                continue;
            }
            if (blank(operation.getSummary()) || blank(operation.getDescription()) || blank(operation.getOperationId())
                    || operation.getTags() == null || operation.getTags().isEmpty()) {
                wrong.add(name + "no summary, description, operationId or tag");
            }
            Map<String, ApiResponse> responses = operation.getResponses();
            boolean successExample = responses.entrySet().stream()
                    .anyMatch(e -> e.getKey().startsWith("2") && hasExamples(e.getValue().getContent()));
            if (!successExample) {
                wrong.add(name + "no success response with an example");
            }
            for (Map.Entry<String, ApiResponse> response : responses.entrySet()) {
                if (response.getKey().startsWith("4") || response.getKey().startsWith("5")) {
                    MediaType json = mediaType(response.getValue().getContent(), "application/json");
                    if (json == null || !"#/components/schemas/ErrorBody".equals(json.getSchema().get$ref())
                            || json.getExamples() == null || json.getExamples().isEmpty()) {
                        wrong.add(name + response.getKey() + " is not an ErrorBody with an example");
                    }
                }
            }
            // 400 too: every /api route refuses a query parameter it does not read (QueryParameterFilter).
            for (String status : List.of("400", "401", "403", "503")) {
                if (!responses.containsKey(status)) {
                    wrong.add(name + "no " + status);
                }
            }
            Scope scope = route.getAnnotationMetadata().enumValue(RequiresScope.class, Scope.class).orElseThrow();
            ApiResponse forbidden = responses.get("403");
            if (forbidden != null && !examples(forbidden.getContent()).toString().contains("scope '" + scope.wireName() + "'")) {
                wrong.add(name + "403 does not name scope " + scope.wireName());
            }
            if ((method.equals("POST") || method.equals("PUT")) && operation.getRequestBody() != null
                    && !hasExamples(operation.getRequestBody().getContent())) {
                wrong.add(name + "request body without an example");
            }
            if (item.getParameters() == null && operation.getParameters() != null) {
                operation.getParameters().stream()
                        .filter(p -> p.getSchema() == null || "object".equals(p.getSchema().getType()))
                        .forEach(p -> wrong.add(name + "parameter " + p.getName() + " has no scalar schema"));
            }
        }
        Set<String> documented = new TreeSet<>();
        api.getPaths().forEach((path, item) -> item.readOperationsMap().keySet()
                .forEach(method -> documented.add(method.name() + " " + path)));
        assertThat(wrong).isEmpty();
        assertThat(routed).as("the walk found the API").hasSizeGreaterThanOrEqualTo(24);
        assertThat(documented).as("documented routes that do not exist").isEqualTo(routed);
    }

    /**
     * Every JSON example is an object whose fields its schema names (a typo or a camelCase name fails). Not every field:
     * the generator drops the {@code null}s of an example; {@link #realAnswersHaveTheFieldsTheDocumentNames} checks those.
     */
    @Test
    void examplesHaveOnlyFieldsTheirSchemasName() {
        List<String> wrong = new ArrayList<>();
        api.getPaths().forEach((path, item) -> item.readOperationsMap().forEach((method, operation) -> {
            String name = method + " " + path;
            if (operation.getRequestBody() != null) {
                check(name + " request", operation.getRequestBody().getContent(), wrong);
            }
            operation.getResponses().forEach((status, response) -> check(name + " " + status, response.getContent(), wrong));
        }));
        assertThat(wrong).isEmpty();
    }

    /** The document's names are the wire's: snake_case, every field present (null or []). */
    @Test
    void realAnswersHaveTheFieldsTheDocumentNames() throws Exception {
        String task = coordinator.submit(KEY,
                "{\"description\": \"doc check\", \"cli_assignments\": [{\"cli_name\": \"demo\", \"timeout\": 60}]}");
        Map<String, String> reads = new LinkedHashMap<>();
        reads.put("/api/v1/tasks", "/api/v1/tasks");
        reads.put("/api/v1/tasks/{id}", "/api/v1/tasks/" + task);
        reads.put("/api/v1/budgets", "/api/v1/budgets");
        reads.put("/api/v1/budgets/{tenant}", "/api/v1/budgets/ops");
        reads.put("/api/v1/limits", "/api/v1/limits");
        reads.put("/api/v1/limits/{agent}", "/api/v1/limits/claude-code");
        reads.put("/api/v1/queues", "/api/v1/queues");
        reads.put("/api/v1/workers", "/api/v1/workers");
        reads.put("/api/v1/dead-letters", "/api/v1/dead-letters");
        reads.put("/api/v1/keys", "/api/v1/keys");
        reads.put("/api/v1/reports/budget-violations", "/api/v1/reports/budget-violations");
        reads.put("/api/v1/reports/rate-limit-failures", "/api/v1/reports/rate-limit-failures");
        reads.put("/api/v1/reports/cost-anomalies", "/api/v1/reports/cost-anomalies");
        List<String> wrong = new ArrayList<>();
        for (Map.Entry<String, String> read : reads.entrySet()) {
            HttpResponse<String> answer = coordinator.get(read.getValue(), KEY);
            assertThat(answer.statusCode()).as(read.getValue() + ": " + answer.body()).isEqualTo(200);
            Schema<?> schema = schema(mediaType(api.getPaths().get(read.getKey()).getGet().getResponses().get("200").getContent(),
                    "application/json").getSchema());
            Set<String> actual = fieldNames(JSON.readTree(answer.body()));
            if (!actual.equals(new TreeSet<>(schema.getProperties().keySet()))) {
                wrong.add(read.getKey() + " answered " + actual + ", the document says " + new TreeSet<>(schema.getProperties().keySet()));
            }
        }
        assertThat(wrong).isEmpty();
    }

    @Test
    void theSwaggerUiIsServedFromTheJarWithoutAKey() throws Exception {
        HttpResponse<String> page = anonymous(UI);
        assertThat(page.statusCode()).isEqualTo(200);
        assertThat(page.headers().firstValue("Content-Type").orElse("")).startsWith("text/html");
        assertThat(page.body()).contains("'/swagger/kage-coordinator.yml'").contains("SwaggerUIBundle")
                .doesNotContain("https://");
        HttpResponse<String> bundle = anonymous("/swagger-ui/res/swagger-ui-bundle.js");
        assertThat(bundle.statusCode()).isEqualTo(200);
        assertThat(bundle.body()).contains("SwaggerUIBundle");
        assertThat(anonymous("/swagger-ui/res/swagger-ui.css").statusCode()).isEqualTo(200);
    }

    private static void check(String name, Content content, List<String> wrong) {
        if (content == null) {
            return;
        }
        content.forEach((type, media) -> {
            if (media.getExamples() == null || media.getSchema() == null || media.getSchema().get$ref() == null) {
                return;
            }
            Set<String> declared = new TreeSet<>(schema(media.getSchema()).getProperties().keySet());
            media.getExamples().forEach((exampleName, example) -> {
                Set<String> given = fieldNames(JSON.valueToTree(example.getValue()));
                if (given.isEmpty() || !declared.containsAll(given)) {
                    wrong.add(name + " example '" + exampleName + "' has " + given + ", the schema " + declared);
                }
            });
        });
    }

    private static Schema<?> schema(Schema<?> reference) {
        String ref = reference.get$ref();
        return ref == null ? reference : api.getComponents().getSchemas().get(ref.substring(ref.lastIndexOf('/') + 1));
    }

    private static Set<String> fieldNames(JsonNode object) {
        Set<String> names = new TreeSet<>();
        for (Iterator<String> it = object.fieldNames(); it.hasNext(); ) {
            names.add(it.next());
        }
        return names;
    }

    private static MediaType mediaType(Content content, String type) {
        return content == null ? null : content.get(type);
    }

    private static boolean hasExamples(Content content) {
        return !examples(content).isEmpty();
    }

    private static List<Object> examples(Content content) {
        List<Object> values = new ArrayList<>();
        if (content != null) {
            content.values().forEach(media -> {
                if (media.getExample() != null) {
                    values.add(media.getExample());
                }
                if (media.getExamples() != null) {
                    media.getExamples().values().forEach(e -> values.add(e.getValue()));
                }
            });
        }
        return values;
    }

    private static boolean blank(String text) {
        return text == null || text.isBlank();
    }

    private static HttpResponse<String> anonymous(String path) throws Exception {
        return coordinator.http().send(HttpRequest.newBuilder(coordinator.uri(path)).GET().build(),
                HttpResponse.BodyHandlers.ofString());
    }
}
