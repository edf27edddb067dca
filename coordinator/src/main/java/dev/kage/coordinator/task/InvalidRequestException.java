package dev.kage.coordinator.task;

import dev.kage.KageException;
import dev.kage.coordinator.api.ErrorBody.FieldError;
import java.util.List;
import java.util.stream.Collectors;

/** The request body broke one or more rules; answered with 400 and one entry per bad field. */
public class InvalidRequestException extends KageException {
    private final List<FieldError> errors;

    public InvalidRequestException(List<FieldError> errors) {
        super(errors.stream().map(e -> e.field() + ": " + e.message()).collect(Collectors.joining("; ")), false);
        this.errors = List.copyOf(errors);
    }

    public List<FieldError> errors() {
        return errors;
    }
}
