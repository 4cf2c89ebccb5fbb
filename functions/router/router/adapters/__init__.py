"""AWS adapters of the router: each wraps one boto3 client and raises house_prices.errors only."""
