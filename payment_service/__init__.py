"""Payment service: charges reserved orders through a payment gateway."""
