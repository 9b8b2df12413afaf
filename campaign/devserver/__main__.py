"""``python -m campaign.devserver``: serve on 127.0.0.1:3030 until interrupted."""

from campaign.devserver.running import main

main()
