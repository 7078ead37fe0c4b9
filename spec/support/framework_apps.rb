# frozen_string_literal: true

require "json"
require "open3"
require_relative "realtime"

# Shared by the specs that run real frameworks on the server (spec/integration/rails_spec.rb,
# spec/integration/sinatra_spec.rb): whether a framework can be loaded, a GET that times when
# each piece of a streamed body arrives, the Action Cable client
# (spec/support/action_cable_client.py), and a check that an example made the server (or the
# framework) log no error it did not expect.
module FrameworkApps
  # `eventually` and the Python runner.
  include RealtimeHelpers

  ACTION_CABLE_CLIENT = File.join(__dir__, "action_cable_client.py")

  # Why `requires` can't be loaded (in a child Ruby, so the spec process stays free of the
  # framework), or nil when they can.
  def self.load_error(requires)
    script = "#{requires.map { |r| "require #{r.inspect}" }.join("; ")}; print :ok"
    out, status = Open3.capture2e(RbConfig.ruby, "-e", script)
    return nil if status.success? && out.end_with?("ok")

    out[/cannot load such file -- \S+/] || out.lines.first.to_s.strip
  end

  def self.now
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  # A response read off a raw socket: status, headers (lowercased names), the de-chunked
  # body, and when each marker first arrived (seconds after the request was written).
  TimedResponse = Struct.new(:status, :headers, :body, :arrivals, :raw, :complete, keyword_init: true)

  # Sends `GET path` (Connection: close) on a raw TCPSocket and reads until the server closes
  # the connection or `timeout` seconds pass, noting when each of `markers` (Strings) first
  # shows up in the bytes received.
  def timed_get(port, path, markers: [], timeout: 10)
    socket = TCPSocket.new("127.0.0.1", port)
    socket.write("GET #{path} HTTP/1.1\r\nHost: 127.0.0.1:#{port}\r\nConnection: close\r\n\r\n")
    started = FrameworkApps.now
    arrivals = {}
    raw, closed = read_for(socket, timeout) do |bytes|
      markers.each { |m| arrivals[m] ||= FrameworkApps.now - started if bytes.include?(m) }
      false
    end
    markers.each { |m| arrivals[m] ||= FrameworkApps.now - started if raw.include?(m) }
    parse_response(raw, arrivals, closed)
  ensure
    socket&.close
  end

  def parse_response(raw, arrivals = {}, complete = true)
    head, rest = raw.b.split("\r\n\r\n", 2)
    lines = head.to_s.split("\r\n")
    status = lines.shift.to_s[%r{\AHTTP/1\.[01] (\d{3})}, 1]&.to_i
    headers = lines.to_h { |line| line.split(":", 2).map(&:strip).then { |k, v| [k.downcase, v] } }
    body = headers["transfer-encoding"]&.include?("chunked") ? dechunk(rest.to_s) : rest.to_s
    TimedResponse.new(status: status, headers: headers, body: body, arrivals: arrivals, raw: raw, complete: complete)
  end

  # The data of a chunked body (as much of it as is there).
  def dechunk(bytes)
    out = +""
    until bytes.empty?
      size_line, bytes = bytes.split("\r\n", 2)
      size = size_line.to_s[/\A\h+/]&.to_i(16)
      break if size.nil? || size.zero? || bytes.nil?

      out << bytes.byteslice(0, size)
      bytes = bytes.byteslice(size + 2..) || ""
    end
    out
  end

  # Runs action_cable_client.py with `request` (see its docstring) and returns its JSON answer;
  # the script bounds its own waits, `kill_after` seconds is the safety net.
  def action_cable_client(kill_after: 30, **request)
    python_json(ACTION_CABLE_CLIENT, request, kill_after: kill_after)
  end

  # Lines of `log` that report an error: the server's own (ERROR/FATAL/WARNING, unprotected
  # exceptions, invalid responses) and the exception reports Rails (`Class (message):`) and
  # Sinatra (`<time> - Class - message:`) write, minus those matching one of `allowed`.
  def unexpected_log_lines(log, allowed = [])
    # scrub: an app may log bytes that are not UTF-8 (a client's binary message).
    reports = log.scrub.lines.map(&:chomp).select do |line|
      line.match?(/\A(?:ERROR|FATAL|WARNING): /) ||
        line.include?("Iodine caught an unprotected exception") ||
        line.match?(/\A[A-Z]\w*(?:::[A-Z]\w*)* \(/) ||
        line.match?(/\A\d{4}-\d\d-\d\d \d\d:\d\d:\d\d - [A-Z][\w:]* - /)
    end
    reports.reject { |line| allowed.any? { |pattern| line.match?(pattern) } }
  end

  # The part of the server's log written since `mark` (a byte offset), once it stopped
  # growing for a moment (the server writes its log from a thread of its own).
  def log_since(server, mark, settle: 0.15, timeout: 2)
    deadline = FrameworkApps.now + timeout
    size = -1
    text = server.log
    until text.bytesize == size || FrameworkApps.now > deadline
      size = text.bytesize
      sleep settle
      text = server.log
    end
    text.byteslice(mark..) || ""
  end
end

# After each example of a framework's spec, the server's log written during it holds no error
# but those the example allows (`log_allows: [regexp, ...]` in its metadata). Needs @server.
RSpec.shared_context "a framework app's log stays clean" do
  before { @log_mark = @server.log.bytesize }

  after do |example|
    written = log_since(@server, @log_mark)
    unexpected = unexpected_log_lines(written, Array(example.metadata[:log_allows]))
    expect(unexpected).to be_empty, "unexpected errors in the server log:\n#{unexpected.join("\n")}\n\n" \
                                    "the log during the example:\n#{written[0, 3000]}"
  end
end
