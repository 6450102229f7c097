from infra.service import main
from inventory_service.main import run

main(run)
