"""Helpers the tasks' `evaluate_data` share: batching for compiled decoding,
example limits, and loss-based scores over every example."""


def in_batches(function, items, batch_size):
    """`function` over `items` in chunks of exactly `batch_size` (the last one
    padded with repeats), so a compiled decoding loop is traced once.

    Example:
    >>> in_batches(lambda chunk: [len(x) for x in chunk], ["a", "bb", "ccc"], 2)
    [1, 2, 3]
    """
    outputs = []
    for start in range(0, len(items), batch_size):
        chunk = list(items[start : start + batch_size])
        real = len(chunk)
        if len(items) > batch_size:
            chunk += [chunk[0]] * (batch_size - real)
        outputs.extend(function(chunk)[:real])
    return outputs


def limit_examples(options, count):
    """`count`, or the `num_examples` option when smaller."""
    limit = options.get("num_examples")
    return count if limit is None else min(count, limit)


def token_scores(model, make_dataset, columns, batch_size):
    """The model's default loss and metrics over every example of `columns`.

    `make_dataset(*columns, batch_size=..., shuffle=False)` must build the
    batches; the examples that do not fill a whole batch are scored in one
    smaller batch, so every example counts. The model is compiled with its
    defaults (`Task.compile()`) for this.

    Returns:
        `{"loss": float, metric name: float, ...}`.
    """
    count = len(columns[0])
    batch_size = max(1, min(batch_size, count))
    whole = count - count % batch_size
    dataset = make_dataset(*(c[:whole] for c in columns), batch_size=batch_size, shuffle=False)
    if whole < count:
        rest = make_dataset(*(c[whole:] for c in columns), batch_size=batch_size, shuffle=False)
        dataset = dataset.concatenate(rest)
    model.compile()
    scores = model.evaluate(dataset, verbose=0, return_dict=True)
    return {name: float(value) for name, value in scores.items()}
