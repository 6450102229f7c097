from payment_service.main import run

run()
