"""An attribute bag that Keras and SavedModel tracking do not look inside."""


class Untracked:
    """Plain attributes kept out of Keras' and TensorFlow's object tracking.

    Layers and models keep here what must not be saved or exported: cached
    eager `tf.function`s (SavedModel would export them as extra functions,
    and cannot save a dict keyed by tuples), and helper objects whose state
    the owner saves itself.

    Example:
    >>> bag = Untracked()
    >>> bag.functions[("greedy", 1)] = len
    >>> bag.functions[("greedy", 1)]("abc")
    3
    """

    def __init__(self):
        self.functions = {}
