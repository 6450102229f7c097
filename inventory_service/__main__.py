from inventory_service.main import run

run()
