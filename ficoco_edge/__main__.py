from ficoco_edge.cli import main

main()
