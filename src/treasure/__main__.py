"""`python -m treasure CMD ...`: the CLI as a module, for launchers that take one
(`accelerate launch -m treasure train TRAIN_DIR -o MODEL_DIR ...`)."""

from treasure.cli import main

if __name__ == "__main__":
    main()
