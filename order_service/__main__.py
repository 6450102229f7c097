from infra.service import main
from order_service.main import run

main(run)
