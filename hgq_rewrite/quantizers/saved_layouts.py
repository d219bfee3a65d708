"""Loading files saved before some of a layer's variables were packed into one.

Keras saves a layer's own variables as entries ``"0"``, ``"1"``, ... in their order
(``save_own_variables``) and loads them back by position. Several small state variables
of the quantizers and H-layers are now one variable each (every variable costs a
backend op and a kernel-cache miss when ``quantize`` builds thousands of layers); a file
saved before that holds them as separate, consecutive entries.
"""

import numpy as np


def own_variables(layer):
    """``layer``'s own variables (not its sublayers') in the order Keras saves them."""
    store = {}
    layer.save_own_variables(store)
    return [store[str(i)] for i in range(len(store))]


def load_older_layout(layer, store, layouts):
    """Load ``store`` into ``layer`` if it holds one of the older ``layouts``; False if none matches.

    A layout is a list of ``(variable, n)``: ``variable`` was saved as ``n`` consecutive entries,
    stacked now along its first axis (``n=0``: not saved then, it keeps its initial value); each
    variable not listed was saved as one entry.
    """
    own = own_variables(layer)
    for layout in layouts:
        counts = [next((n for var, n in layout if var is v), 1) for v in own]
        if len(store.keys()) != sum(counts) or counts == [1] * len(own):
            continue
        start = 0
        for var, n in zip(own, counts):
            parts = [np.asarray(store[str(start + j)]) for j in range(n)]
            if parts:
                var.assign(parts[0] if n == 1 else np.stack(parts))
            start += n
        return True
    return False


def load_older_state(quantizer, store):
    """Load into an activation quantizer (``fbw``, ``minmax`` = [min, max, calibrated], ``fw_kif`` = [k, i, f,
    saturate]) the state saved by an earlier version; False if ``store`` holds the current layout or none known.

    Known layouts after ``fbw``: ``[min, max]`` packed, or ``min`` and ``max`` apart; then nothing (saved before
    the firmware state existed: loads uncalibrated), ``[calibrated, saturate]`` and ``[k, i, f]`` packed, or
    the five apart.
    """
    entries = [np.asarray(store[str(i)]) for i in range(len(store.keys()))]
    if [e.shape for e in entries] == [tuple(v.shape) for v in own_variables(quantizer)] or not entries:
        return False
    bw_shape = tuple(quantizer.bw_shape)
    fbw, rest = entries[0], entries[1:]
    if fbw.shape != bw_shape:
        return False
    if rest and rest[0].shape == (2, *bw_shape):
        (lo, hi), rest = rest[0], rest[1:]
    elif len(rest) >= 2 and rest[0].shape == rest[1].shape == bw_shape:
        lo, hi, rest = rest[0], rest[1], rest[2:]
    else:
        return False
    if not rest:
        calibrated, saturate, kif = 0.0, 0.0, None
    elif len(rest) == 2 and rest[0].shape == (2,):
        (calibrated, saturate), kif = rest[0], list(rest[1])
    elif len(rest) == 5 and all(e.size == 1 for e in rest[:2]):
        calibrated, saturate, kif = float(rest[0]), float(rest[1]), rest[2:]
    else:
        return False
    if kif is not None and not quantizer.has_firmware_state:
        return False
    quantizer.fbw.assign(fbw)
    quantizer.minmax.assign(np.stack([lo, hi, np.full(bw_shape, calibrated, lo.dtype)]))
    if quantizer.has_firmware_state:
        fw_shape = tuple(quantizer.fw_kif.shape[1:])
        rows = kif if kif is not None else [np.zeros(fw_shape)] * 3
        quantizer.fw_kif.assign(np.stack([*(np.broadcast_to(r, fw_shape) for r in rows), np.full(fw_shape, saturate)]))
    return True
