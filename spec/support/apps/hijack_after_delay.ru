# frozen_string_literal: true

# Sleeps (GET /hijack?SECONDS, default 1), then hijacks the socket and writes a complete
# response on it. Logs to $stderr the peer port of the IO it got (or the IOError), so specs
# can tell which connection rack.hijack handed out. GET /fds counts the process's open
# descriptors; anything else answers "ok".
HIJACK_DONE = Hash.new(0)

app = lambda do |env|
  case env["PATH_INFO"]
  when "/hijack"
    delay = env["QUERY_STRING"].empty? ? 1.0 : Float(env["QUERY_STRING"])
    sleep delay
    begin
      io = env["rack.hijack"].call
      port = (io.remote_address.ip_port rescue nil)
      $stderr.puts "hijacked-peer-port=#{port.inspect}"
      begin
        io.write("HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nhijack!")
        HIJACK_DONE["written"] += 1
      rescue IOError, SystemCallError => e
        HIJACK_DONE["write_failed"] += 1
        $stderr.puts "hijack-write-failed=#{e.class}"
      ensure
        io.close rescue nil
      end
    rescue IOError => e
      HIJACK_DONE["hijack_raised"] += 1
      $stderr.puts "hijack-raised=#{e.message}"
    end
    [200, {}, ["ignored"]]
  when "/fds"
    [200, { "content-type" => "text/plain" }, [Dir.children("/proc/self/fd").size.to_s]]
  when "/hijacks"
    [200, { "content-type" => "text/plain" }, [HIJACK_DONE.map { |k, v| "#{k}=#{v}" }.join(",")]]
  else
    [200, { "content-type" => "text/plain" }, ["ok"]]
  end
end

run app
