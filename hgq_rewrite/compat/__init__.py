"""The private APIs of Keras and hls4ml this package relies on, one module per dependency.

Every access to a private name of a dependency goes through ``keras_private`` or
``hls4ml_private``; ``tests/test_compat.py`` checks that each still exists and behaves,
so an upgrade that removes one fails there, by name.
"""
