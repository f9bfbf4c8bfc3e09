"""The read side: parameterised SQL over read models, returning response Structs."""
