from lifecycle_cli import main

main()
