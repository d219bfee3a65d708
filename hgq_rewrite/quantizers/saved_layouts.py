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
