from infra.service import main
from notification_service.main import run

main(run)
