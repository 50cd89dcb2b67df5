"""The engine: everything that trains, samples, scores and animates. The CLI only calls it."""
