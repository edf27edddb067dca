package dev.kage.coordinator.api;

import dev.kage.coordinator.task.InvalidRequestException;
import io.micronaut.http.HttpRequest;
import java.util.List;

/**
 * A request header the API reads one value of ({@code Idempotency-Key}, {@code Last-Event-ID}). Sent twice, it is a
 * 400 naming it, as a query parameter given twice is ({@link QueryParameterFilter}): which of two keys guarded a submit
 * must not be the framework's choice.
 */
public final class SingleHeader {
    private SingleHeader() {
    }

    /**
     * @return the header's value, or null when it was not sent
     * @throws InvalidRequestException naming the header when it was sent more than once
     */
    public static String of(HttpRequest<?> request, String name) {
        List<String> values = request.getHeaders().getAll(name);
        if (values.size() > 1) {
            throw new InvalidRequestException(List.of(new ErrorBody.FieldError(name, "was sent " + values.size()
                    + " times; send it once")));
        }
        return values.isEmpty() ? null : values.getFirst();
    }
}
