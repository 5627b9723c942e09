"""The factory's stages (DP, AS, RF, CD, DE), one folder each; `table.STAGES` lists them in pipeline order."""
