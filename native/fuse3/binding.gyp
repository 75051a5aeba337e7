{
  "targets": [
    {
      "target_name": "fuse3",
      "sources": ["fuse3.c", "warm.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "<!@(pkg-config --cflags fuse3)"],
      "libraries": ["<!@(pkg-config --libs fuse3)"]
    }
  ]
}
