"""`python -m services`: every Phoenix 95 service, supervised (what `make run` calls)."""

import asyncio

from services.supervisor import main

if __name__ == "__main__":
    asyncio.run(main())
