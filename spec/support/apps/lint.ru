# frozen_string_literal: true

require "rack/lint"

# Every request goes through Rack::Lint; a Lint error becomes a 500 (the specs expect none).
inner = lambda do |env|
  if env["PATH_INFO"] == "/hijack"
    io = env["rack.hijack"].call
    io.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
    io.close
    return [200, {}, []]
  end
  body = env["rack.input"].read
  env["rack.input"].rewind
  info = "#{env['REQUEST_METHOD']} #{env['PATH_INFO']}?#{env['QUERY_STRING']} #{body.bytesize}"
  headers = { "Content-Type" => "text/plain", "X-Info" => info }
  headers["Content-Length"] = info.bytesize.to_s unless env["PATH_INFO"] == "/nolength"
  [200, headers, [info]]
end

run Rack::Lint.new(inner)
