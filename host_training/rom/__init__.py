"""Range of motion: the personal envelope a model reaches and holds, and the offline marker
assessment against it."""
