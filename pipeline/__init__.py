"""Runs the stage command lines in order. Stages talk only through files; so does the pipeline."""
