from ikeflow.cli import main

main()
