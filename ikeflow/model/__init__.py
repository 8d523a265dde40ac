"""The sans-I/O core: per peer pair, IKE SA and ESP SA state built from decoded packets (analysis, ikesa,
esp, natt), the expected sequences as tables (sequences) and the events told to listeners (events)."""
