from notification_service.main import run

run()
