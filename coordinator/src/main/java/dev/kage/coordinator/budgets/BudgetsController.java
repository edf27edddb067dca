package dev.kage.coordinator.budgets;

import dev.kage.coordinator.api.ApiDocs;
import io.swagger.v3.oas.annotations.Operation;
import io.swagger.v3.oas.annotations.Parameter;
import io.swagger.v3.oas.annotations.enums.ParameterIn;
import io.swagger.v3.oas.annotations.media.Content;
import io.swagger.v3.oas.annotations.media.ExampleObject;
import io.swagger.v3.oas.annotations.media.Schema;
import io.swagger.v3.oas.annotations.parameters.RequestBody;
import io.swagger.v3.oas.annotations.responses.ApiResponse;
import io.swagger.v3.oas.annotations.tags.Tag;
import dev.kage.coordinator.auth.RequiresScope;
import dev.kage.coordinator.auth.Scope;
import com.fasterxml.jackson.databind.JsonNode;
import dev.kage.agent.AgentCatalog;
import dev.kage.agent.AgentConfig;
import dev.kage.budget.BudgetLedger;
import dev.kage.budget.BudgetLedger.PoolState;
import dev.kage.budget.PeriodLimits;
import dev.kage.coordinator.api.ErrorBody;
import dev.kage.coordinator.api.ErrorBody.FieldError;
import dev.kage.coordinator.api.JsonBodies;
import dev.kage.coordinator.auth.ApiKeyFilter;
import dev.kage.coordinator.auth.ApiKeys;
import dev.kage.coordinator.task.InvalidRequestException;
import dev.kage.coordinator.task.SubmitRequestParser;
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
import io.micronaut.http.annotation.Put;
import io.micronaut.scheduling.TaskExecutors;
import io.micronaut.scheduling.annotation.ExecuteOn;
import io.micronaut.serde.annotation.Serdeable;
import io.micronaut.serde.config.naming.SnakeCaseStrategy;
import java.math.BigDecimal;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Map;
import java.util.Set;

/**
 * Budgets as the fleet holds them in Redis: {@code GET /api/v1/budgets} shows the caller's tenant pools for the
 * current UTC day and month (limit, used, reserved, remaining, in tokens and USD) and the pools of agents with
 * budgets of their own; {@code GET|PUT|DELETE /api/v1/budgets/{tenant}} reads, sets or resets one tenant's period
 * limits (a key with scope {@code read} reads its own tenant's; reading another's and changing any needs scope
 * {@code admin}). A change applies to the whole fleet at once: to the next reservation, and to the holds of agents
 * already running (their top-ups meet the new limit).
 */
@Controller("/api/v1/budgets")
@Tag(name = "budgets")
@ExecuteOn(TaskExecutors.BLOCKING)
public class BudgetsController {
    private static final Set<String> FIELDS = Set.of("tokens_per_day", "tokens_per_month", "usd_per_day", "usd_per_month");

    private final BudgetLedger ledger;
    private final AgentCatalog catalog;
    public BudgetsController(BudgetLedger ledger, AgentCatalog catalog, dev.kage.store.TenantBudgetLimitStore stored) {
        this.ledger = ledger;
        this.catalog = catalog;
        this.stored = stored;
    }

    /** The operators' tenant limits as Postgres keeps them: written first, so a Redis that loses its data gets them back. */
    private final dev.kage.store.TenantBudgetLimitStore stored;

    @Operation(operationId = "myBudgets", summary = "The caller's budgets",
            description = "The tenant's pools for the current UTC day and month (limit, used, reserved, remaining, in tokens "
                    + "and USD; a limit of 0 means none) and the pools of agents with budgets of their own.")
    @ApiResponse(responseCode = "200", description = "The pools",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = Budgets.class),
                    examples = @ExampleObject(name = "pools", value = """
                            {"tenant_name": "acme", "mode": "enforce", "source": "operator", \
                            "tenant": [{"kind": "tenant", "owner": "acme", "period": "day:2025-06-10", "token_limit": 2000000, \
                            "tokens_used": 150000, "tokens_reserved": 20000, "tokens_remaining": 1830000, "usd_limit": 25.000000, \
                            "usd_used": 1.200000, "usd_reserved": 0.160000, "usd_remaining": 23.640000}], \
                            "agents": [{"kind": "agent", "owner": "claude-code", "period": "month:2025-06", "token_limit": 0, \
                            "tokens_used": 900000, "tokens_reserved": 0, "tokens_remaining": null, "usd_limit": 500.000000, \
                            "usd_used": 7.300000, "usd_reserved": 0.000000, "usd_remaining": 492.700000}]}""")))
    @ApiDocs.ReadErrors
    @RequiresScope(Scope.READ)
    @dev.kage.coordinator.api.ApiDocs.QueryParameterErrors
    @Get(produces = MediaType.APPLICATION_JSON)
    public Budgets mine(HttpRequest<?> request) {
        String tenant = tenant(request);
        List<PoolView> agents = new ArrayList<>();
        for (String name : catalog.names()) {
            AgentConfig agent = catalog.require(name);
            // The budget the workers apply: the one the last started published, not this coordinator's agents.yml.
            if (!ledger.defaults().agent(name, agent.budget()).isNone()) {
                ledger.agentPools(name, agent.budget()).forEach(p -> agents.add(PoolView.of(p)));
            }
        }
        return new Budgets(tenant, ledger.mode().name().toLowerCase(), source(tenant), tenantPools(tenant), agents);
    }

    @Operation(operationId = "getTenantBudgets", summary = "One tenant's budgets",
            parameters = @Parameter(schema = @Schema(type = "string"), name = "tenant", in = ParameterIn.PATH,
                    example = "acme", description = "the tenant"),
            description = "A key reads its own tenant's; another tenant's needs scope `admin` as well.")
    @ApiResponse(responseCode = "200", description = "The tenant's pools",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = Budgets.class),
                    examples = @ExampleObject(name = "pools", value = """
                            {"tenant_name": "acme", "mode": "enforce", "source": "operator", \
                            "tenant": [{"kind": "tenant", "owner": "acme", "period": "day:2025-06-10", "token_limit": 2000000, \
                            "tokens_used": 150000, "tokens_reserved": 20000, "tokens_remaining": 1830000, "usd_limit": 25.000000, \
                            "usd_used": 1.200000, "usd_reserved": 0.160000, "usd_remaining": 23.640000}], "agents": []}""")))
    @ApiDocs.ReadErrors
    @RequiresScope(Scope.READ)
    @dev.kage.coordinator.api.ApiDocs.QueryParameterErrors
    @Get(value = "/{tenant}", produces = MediaType.APPLICATION_JSON)
    public HttpResponse<?> get(HttpRequest<?> request, @PathVariable String tenant) {
        checkTenant(tenant);
        if (!tenant.equals(tenant(request)) && !ApiKeyFilter.principal(request).has(Scope.ADMIN)) {
            return forbidden("reading another tenant's budgets");
        }
        return HttpResponse.ok(new Budgets(tenant, ledger.mode().name().toLowerCase(), source(tenant), tenantPools(tenant),
                List.of()));
    }

    /**
     * Sets the tenant's limits: any of {@code tokens_per_day}, {@code tokens_per_month} (whole tokens),
     * {@code usd_per_day}, {@code usd_per_month} (dollars); 0 means no limit; fields left out keep their value.
     */
    @Operation(operationId = "setTenantBudgets", summary = "Set a tenant's limits",
            parameters = @Parameter(schema = @Schema(type = "string"), name = "tenant", in = ParameterIn.PATH,
                    example = "acme", description = "the tenant"),
            description = "Any of the fields; fields left out keep their value, 0 means no limit. Applies to the whole "
                    + "fleet at once: to the next reservation, and to agents already running (their next top-up meets "
                    + "the new limit).",
            requestBody = @RequestBody(required = true, content = @Content(mediaType = MediaType.APPLICATION_JSON,
                    schema = @Schema(implementation = LimitsChange.class), examples = @ExampleObject(name = "day limits", value = """
                            {"tokens_per_day": 2000000, "usd_per_day": 25.00}"""))))
    @ApiResponse(responseCode = "200", description = "The tenant's pools under the new limits",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = Budgets.class),
                    examples = @ExampleObject(name = "pools", value = """
                            {"tenant_name": "acme", "mode": "enforce", "source": "operator", \
                            "tenant": [{"kind": "tenant", "owner": "acme", "period": "day:2025-06-10", "token_limit": 2000000, \
                            "tokens_used": 150000, "tokens_reserved": 20000, "tokens_remaining": 1830000, "usd_limit": 25.000000, \
                            "usd_used": 1.200000, "usd_reserved": 0.160000, "usd_remaining": 23.640000}], "agents": []}""")))
    @ApiResponse(responseCode = "400", description = "A bad field, named",
            content = @Content(mediaType = ApiDocs.JSON, schema = @Schema(implementation = ErrorBody.class), examples =
            @ExampleObject(name = "field", value = """
                    {"error": "validation_failed", "message": "the request is invalid: usd_per_day", \
                    "errors": [{"field": "usd_per_day", "message": "must be an amount of US dollars such as 25.50, 0 for no limit"}]}""")))
    @ApiDocs.BodyTooLarge
    @ApiDocs.AdminErrors
    @RequiresScope(Scope.ADMIN)
    @Put(value = "/{tenant}", consumes = {MediaType.APPLICATION_JSON, MediaType.ALL}, produces = MediaType.APPLICATION_JSON)
    public HttpResponse<?> put(HttpRequest<?> request, @PathVariable String tenant,
                               @Parameter(hidden = true) @Nullable @Body byte[] body) {
        checkTenant(tenant);
        Map<String, Long> fields = parse(body);
        stored.changing(tenant, change -> {
            change.set(fields);
            ledger.setTenantLimits(tenant, fields); // Redis refusing rolls the row back
            return null;
        });
        return HttpResponse.ok(new Budgets(tenant, ledger.mode().name().toLowerCase(), source(tenant), tenantPools(tenant),
                List.of()));
    }

    /** Back to the fleet's defaults ({@code TENANT_MAX_*}). */
    @Operation(operationId = "resetTenantBudgets", summary = "Reset a tenant's limits",
            parameters = @Parameter(schema = @Schema(type = "string"), name = "tenant", in = ParameterIn.PATH,
                    example = "acme", description = "the tenant"),
            description = "Back to the fleet's defaults (`TENANT_MAX_*`).")
    @ApiResponse(responseCode = "200", description = "The tenant's pools under the defaults",
            content = @Content(mediaType = MediaType.APPLICATION_JSON, schema = @Schema(implementation = Budgets.class),
                    examples = @ExampleObject(name = "pools", value = """
                            {"tenant_name": "acme", "mode": "enforce", "source": "defaults", \
                            "tenant": [{"kind": "tenant", "owner": "acme", "period": "day:2025-06-10", "token_limit": 2000000, \
                            "tokens_used": 150000, "tokens_reserved": 20000, "tokens_remaining": 1830000, "usd_limit": 25.000000, \
                            "usd_used": 1.200000, "usd_reserved": 0.160000, "usd_remaining": 23.640000}], "agents": []}""")))
    @ApiDocs.AdminErrors
    @RequiresScope(Scope.ADMIN)
    @dev.kage.coordinator.api.ApiDocs.QueryParameterErrors
    @Delete(value = "/{tenant}", produces = MediaType.APPLICATION_JSON)
    public HttpResponse<?> reset(HttpRequest<?> request, @PathVariable String tenant) {
        checkTenant(tenant);
        stored.changing(tenant, change -> {
            change.clear();
            ledger.clearTenantLimits(tenant);
            return null;
        });
        return HttpResponse.ok(new Budgets(tenant, ledger.mode().name().toLowerCase(), source(tenant), tenantPools(tenant),
                List.of()));
    }

    /** A name no tenant can have ({@code ../x}, {@code a b}, {@code a:b}) never reaches the ledger's keys. */
    private static void checkTenant(String tenant) {
        if (!ApiKeys.TENANT.matcher(tenant).matches()) {
            throw new InvalidRequestException(List.of(new FieldError("tenant", "'" + dev.kage.coordinator.api.ErrorBody.printable(tenant)
                    + "' is not a tenant name: " + ApiKeys.TENANT_RULE)));
        }
    }

    private String source(String tenant) {
        return ledger.hasTenantLimits(tenant) ? "operator" : "defaults";
    }

    private List<PoolView> tenantPools(String tenant) {
        return ledger.tenantPools(tenant).stream().map(PoolView::of).toList();
    }

    private static String tenant(HttpRequest<?> request) {
        return request.getAttribute(ApiKeyFilter.TENANT, String.class).orElseThrow();
    }

    private static HttpResponse<?> forbidden(String what) {
        return HttpResponse.status(HttpStatus.FORBIDDEN).body(ErrorBody.of("forbidden",
                what + " needs an API key with scope 'admin' (created with scope admin, or a KAGE_API_KEYS key of a tenant in"
                        + " KAGE_ADMIN_TENANTS)"));
    }

    /**
     * The limits the body names, by the ledger's field names: only those are written, so a field the body leaves out
     * keeps following the fleet's default ({@code TENANT_MAX_*}) or an earlier change, and two changes of different
     * fields at once both stand.
     */
    private static Map<String, Long> parse(byte[] body) {
        List<FieldError> errors = new ArrayList<>();
        JsonNode root = JsonBodies.object(body, FIELDS, errors);
        Map<String, Long> fields = new java.util.LinkedHashMap<>();
        tokens(root, "tokens_per_day", errors).ifPresent(v -> fields.put(BudgetLedger.DAY_TOKENS, v));
        tokens(root, "tokens_per_month", errors).ifPresent(v -> fields.put(BudgetLedger.MONTH_TOKENS, v));
        usd(root, "usd_per_day", errors).ifPresent(v -> fields.put(BudgetLedger.DAY_USD, v));
        usd(root, "usd_per_month", errors).ifPresent(v -> fields.put(BudgetLedger.MONTH_USD, v));
        if (!errors.isEmpty()) {
            throw new InvalidRequestException(errors);
        }
        return fields;
    }

    private static Optional<Long> tokens(JsonNode root, String field, List<FieldError> errors) {
        JsonNode value = root.get(field);
        if (value == null) {
            return Optional.empty();
        }
        // canConvertToLong too: a whole number beyond 64 bits would otherwise keep its low bits (2^64 + 5 read as 5).
        if (!value.canConvertToExactIntegral() || !value.canConvertToLong() || value.asLong() < 0
                || value.asLong() > dev.kage.config.BudgetSettings.MAX_TOKENS) {
            errors.add(new FieldError(field, "must be a whole number of tokens up to 10^15, 0 for no limit"));
            return Optional.empty();
        }
        return Optional.of(value.asLong());
    }

    private static Optional<Long> usd(JsonNode root, String field, List<FieldError> errors) {
        JsonNode value = root.get(field);
        if (value == null) {
            return Optional.empty();
        }
        if (!value.isNumber() || value.decimalValue().signum() < 0
                || value.decimalValue().compareTo(BigDecimal.valueOf(1_000_000_000L)) > 0) {
            errors.add(new FieldError(field, "must be an amount of US dollars such as 25.50, 0 for no limit"));
            return Optional.empty();
        }
        return Optional.of(PeriodLimits.micros(value.decimalValue()));
    }

    /**
     * The {@code PUT} body, for the OpenAPI document only ({@link #parse} reads the bytes by hand).
     *
     * @param tokensPerDay   whole tokens, 0 for no limit
     * @param tokensPerMonth whole tokens, 0 for no limit
     * @param usdPerDay      US dollars, 0 for no limit
     * @param usdPerMonth    US dollars, 0 for no limit
     */
    @Schema(name = "BudgetLimitsChange")
    record LimitsChange(@Nullable Long tokensPerDay, @Nullable Long tokensPerMonth, @Nullable BigDecimal usdPerDay,
                        @Nullable BigDecimal usdPerMonth) {
    }

    /**
     * @param source {@code operator} when an admin set the tenant's limits, {@code defaults} for {@code TENANT_MAX_*}
     * @param tenant the tenant's pools, day first
     * @param agents pools of agents with budgets of their own (shared by every tenant)
     */
    @Serdeable(naming = SnakeCaseStrategy.class)
    public record Budgets(String tenantName, String mode, String source, List<PoolView> tenant, List<PoolView> agents) {
    }

    /**
     * One pool. A limit of 0 means none; {@code tokens_remaining} / {@code usd_remaining} are then null.
     */
    @Serdeable(naming = SnakeCaseStrategy.class)
    public record PoolView(String kind, String owner, String period, long tokenLimit, long tokensUsed, long tokensReserved,
                           @Nullable Long tokensRemaining, BigDecimal usdLimit, BigDecimal usdUsed, BigDecimal usdReserved,
                           @Nullable BigDecimal usdRemaining) {
        static PoolView of(PoolState p) {
            return new PoolView(p.pool().kind().wireName(), p.pool().owner(), p.pool().period(), p.limit(), p.used(), p.reserved(),
                    p.limit() == 0 ? null : p.remaining(), PeriodLimits.usd(p.usdLimitMicros()), PeriodLimits.usd(p.usdUsedMicros()),
                    PeriodLimits.usd(p.usdReservedMicros()),
                    p.usdLimitMicros() == 0 ? null : PeriodLimits.usd(p.usdRemainingMicros()));
        }
    }
}
