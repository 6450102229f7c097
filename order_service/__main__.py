from order_service.main import run

run()
