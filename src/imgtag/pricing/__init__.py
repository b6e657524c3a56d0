"""What a request costs: the model catalogue, prices, token estimates."""
