# frozen_string_literal: true

require "spec_helper"

RSpec.describe "request bodies spilled to temp files release them when the request ends, not at the next GC" do
  # The app disables GC, so only the server itself can close the spilled files.
  before { @server = ServerProcess.new(["-t", "2", app_path("spilled_bodies_gc_disabled.ru")]) }
  after { @server&.stop }

  let(:port) { @server.port }
  let(:body) { "b" * 200_000 } # over 64 KiB: spilled to an unlinked temp file

  def open_deleted_files
    Dir.glob("/proc/#{@server.pid}/fd/*").count do |fd|
      File.readlink(fd).include?("(deleted)")
    rescue SystemCallError
      false
    end
  end

  def post_many(path, count)
    Net::HTTP.start("127.0.0.1", port, read_timeout: 5, open_timeout: 5) do |http|
      Array.new(count) do
        req = Net::HTTP::Post.new(path)
        req.body = body
        http.request(req).body
      end
    end
  end

  it "holds no temp files after 100 read 200 KB bodies" do
    answers = post_many("/read", 100)
    expect(answers.uniq).to eq(["200000"])
    sleep 0.2
    expect(open_deleted_files).to be < 5
    expect_serving(@server)
  end

  it "holds no temp files after 100 unread 200 KB bodies" do
    answers = post_many("/ignore", 100)
    expect(answers.uniq).to eq(["ignored"])
    sleep 0.2
    expect(open_deleted_files).to be < 5
    expect_serving(@server)
  end
end
