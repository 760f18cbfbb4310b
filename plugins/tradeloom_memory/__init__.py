"""In-process stock plugins: the ``memory`` transport and ``memory`` persistence."""
