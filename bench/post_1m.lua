-- wrk script: POST a 1 MiB body (bench/compare.rb's upload case).
wrk.method = "POST"
wrk.body = string.rep("x", 1048576)
wrk.headers["Content-Type"] = "application/octet-stream"
