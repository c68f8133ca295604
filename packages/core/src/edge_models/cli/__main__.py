from edge_models.cli import main

main()
