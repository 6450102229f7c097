from infra.service import main
from payment_service.main import run

main(run)
