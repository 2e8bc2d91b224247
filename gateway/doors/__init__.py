"""Front doors: other APIs' wire formats, translated at the edge onto `gateway.calls`."""
