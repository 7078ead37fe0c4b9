# frozen_string_literal: true

require "spec_helper"

# A request body too big for memory is spilled to a temporary file; when that file can't
# be created (TMPDIR points nowhere) it is the server's failure: a 500 and an ERROR line in
# the log, not a 400 blaming the client. Small bodies (kept in memory) still work.
RSpec.describe "a request body temp-file failure is a 500 with an error log, not a 400" do
  before(:all) do
    @server = ServerProcess.new(["-t", "2", app_path("counts_request_body.ru")], env: { "TMPDIR" => "/nonexistent/dir" })
  end
  after(:all) { @server&.stop }

  let(:port) { @server.port }

  def post(bytes)
    Net::HTTP.start("127.0.0.1", port, open_timeout: 3, read_timeout: 5) do |http|
      http.post("/count", bytes, "Content-Type" => "application/octet-stream")
    end
  end

  it "answers a 200 KB POST with 500 and logs an ERROR about the body's temporary file" do
    res = post("x" * 200_000)
    expect(res.code).to eq("500")
    log = ""
    deadline = Time.now + 2
    until (log = @server.log).lines.any? { |l| l.include?("ERROR") } || Time.now > deadline
      sleep 0.05
    end
    error_lines = log.lines.grep(/ERROR/)
    expect(error_lines).not_to be_empty, "log:\n#{log}"
    expect(error_lines.join).to match(/body|temp/i)
  end

  it "still answers a 1 KB POST (kept in memory) with 200" do
    res = post("y" * 1024)
    expect(res.code).to eq("200")
    expect(res.body).to eq("1024")
    expect(@server.exited?).to be false
  end
end
